// The live feed: one EventSource on /v1/live (the session cookie authorizes it), shared by whoever listens.
// The browser reconnects by itself and sends Last-Event-ID, so nothing is missed across a short drop.
import { useEffect, useRef, useState } from "preact/hooks";
import type { Notice } from "./api";

export const LIVE_TYPES = ["open", "click", "machine_open", "read", "delivered", "bounce", "complaint"] as const;

export type LiveState = "connecting" | "live" | "reconnecting";

/** Calls `onNotice` for each notice of the account (deduplicated by its id); answers the connection state. */
export function useLive(onNotice: (notice: Notice) => void, includeMachine: boolean): LiveState {
  const [state, setState] = useState<LiveState>("connecting");
  const handler = useRef(onNotice);
  handler.current = onNotice;

  useEffect(() => {
    const seen = new Set<string>();
    const source = new EventSource(`/v1/live${includeMachine ? "?include_machine=true" : ""}`, { withCredentials: true });
    source.onopen = () => setState("live");
    source.onerror = () => setState(source.readyState === EventSource.CLOSED ? "reconnecting" : "reconnecting");
    const receive = (event: MessageEvent<string>) => {
      let notice: Notice;
      try {
        notice = JSON.parse(event.data) as Notice;
      } catch {
        return;
      }
      if (seen.has(notice.id)) return;
      seen.add(notice.id);
      if (seen.size > 5000) seen.clear();
      handler.current(notice);
    };
    for (const type of LIVE_TYPES) source.addEventListener(type, receive as EventListener);
    return () => source.close();
  }, [includeMachine]);

  return state;
}
