// Client-side routes live in the hash, so the server serves one file: #/campaigns, #/campaigns/{id},
// #/messages/{id}, #/recipients/{r}, #/segments.
import { useEffect, useState } from "preact/hooks";

export type Route =
  | { view: "campaigns" }
  | { view: "campaign"; id: string }
  | { view: "message"; id: string }
  | { view: "recipient"; id: string }
  | { view: "segments" };

export function parse(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/");
  const id = parts[1] ? decodeURIComponent(parts.slice(1).join("/")) : "";
  if (parts[0] === "campaigns" && id) return { view: "campaign", id };
  if (parts[0] === "messages" && id) return { view: "message", id };
  if (parts[0] === "recipients" && id) return { view: "recipient", id };
  if (parts[0] === "segments") return { view: "segments" };
  return { view: "campaigns" };
}

export const href = {
  campaigns: "#/campaigns",
  campaign: (id: string) => `#/campaigns/${encodeURIComponent(id)}`,
  message: (id: string) => `#/messages/${encodeURIComponent(id)}`,
  recipient: (r: string) => `#/recipients/${encodeURIComponent(r)}`,
  segments: "#/segments",
};

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location.hash));
  useEffect(() => {
    const changed = () => setRoute(parse(location.hash));
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return route;
}
