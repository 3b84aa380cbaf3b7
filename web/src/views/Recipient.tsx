// A recipient: their messages, recent opens, best time to send, and their privacy: do-not-track (on/off) and
// erasure (after a confirmation). The changes are PUT/DELETE requests with the CSRF token (api.ts).
import { useRef, useState } from "preact/hooks";
import { del, enc, put, type Recipient } from "../api";
import * as fmt from "../format";
import { useGet, useReady } from "../hooks";
import { href } from "../route";
import { Num, Stat } from "../stat";
import { DataTable } from "../table";
import { BestTimeView } from "./BestTime";

interface Erased {
  recipient: string;
  erased: Record<string, number>;
  on_disk_by: string;
}

export function RecipientView({ id }: { id: string }) {
  const data = useGet<Recipient>(`/v1/recipients/${enc(id)}`);
  const [tracking, setTracking] = useState<boolean | null>(null);
  const [erased, setErased] = useState<Erased | null>(null);
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const dialog = useRef<HTMLDialogElement>(null);
  const r = data.data;
  // The API's do-not-track state until this page changes it (then the change's answer).
  const tracked = tracking ?? (r?.tracking === undefined ? null : r.tracking === "on");
  useReady("recipient", !data.loading);

  const setTrack = async (track: boolean) => {
    setBusy(true);
    setProblem(null);
    try {
      const path = `/v1/recipients/${enc(id)}/do-not-track`;
      const answer = await (track ? del<{ tracking: boolean }>(path) : put<{ tracking: boolean }>(path));
      setTracking(answer.tracking);
    } catch (e) {
      setProblem((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  const erase = async () => {
    dialog.current?.close();
    setBusy(true);
    setProblem(null);
    try {
      setErased(await del<Erased>(`/v1/recipients/${enc(id)}`));
      setTracking(false);
    } catch (e) {
      setProblem((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <article aria-labelledby="recipient-title">
      <p class="crumbs">
        <a href={href.campaigns}>Campaigns</a> /
      </p>
      <h1 id="recipient-title">{id}</h1>

      <section aria-labelledby="privacy-title" class="card">
        <h2 id="privacy-title">Privacy</h2>
        <p>
          Do-not-track keeps their pixels and links working but records nothing of them. Erasure deletes their messages, opens,
          clicks and filtered hits and stops tracking them.
        </p>
        <div class="toolbar">
          <button type="button" class="secondary" disabled={busy || erased !== null || tracked === false} onClick={() => setTrack(false)}>
            Stop tracking this recipient
          </button>
          <button type="button" class="secondary" disabled={busy || erased !== null || tracked === true} onClick={() => setTrack(true)}>
            Track this recipient again
          </button>
          <button type="button" class="danger" disabled={busy || erased !== null} onClick={() => dialog.current?.showModal()}>
            Erase this recipient…
          </button>
        </div>
        <p role="status" data-testid="tracking-state" data-tracking={tracked === null ? "" : tracked ? "on" : "off"}>
          {tracked === null ? "" : tracked ? "Tracking is on for this recipient." : "Do-not-track is on: nothing more is recorded for this recipient."}
        </p>
        {problem && <p class="error" role="alert">{problem}</p>}
        {erased && (
          <p role="status" data-testid="erased">
            Erased {fmt.count(erased.erased.messages)} messages, {fmt.count(erased.erased.events)} opens and clicks and{" "}
            {fmt.count(erased.erased.filtered_hits)} filtered hits; gone from disk by {fmt.time(erased.on_disk_by)}.
          </p>
        )}
        <dialog ref={dialog} aria-labelledby="erase-title" aria-describedby="erase-text">
          <h2 id="erase-title">Erase {id}?</h2>
          <p id="erase-text">
            Every message, open, click and filtered hit of this recipient is deleted, and their later opens are not recorded. This
            cannot be undone.
          </p>
          <div class="toolbar">
            <button type="button" class="secondary" onClick={() => dialog.current?.close()} autoFocus>
              Cancel
            </button>
            <button type="button" class="danger" onClick={erase}>
              Erase
            </button>
          </div>
        </dialog>
      </section>

      {data.error && !erased && <p class="error" role="alert">{data.error}</p>}
      {r && !erased && (
        <>
          <dl class="stats">
            <Stat field="opens" label="Opens" value={r.opens} prefix="recipient" />
          </dl>
          {r.delivery_events && Object.keys(r.delivery_events).length > 0 && (
            <section aria-labelledby="delivery-title" class="card">
              <h2 id="delivery-title">What their mail service reported</h2>
              <p>
                {r.hard_bounced ? "A message to this address hard-bounced. " : ""}
                {r.complained ? "They marked a message as spam. " : ""}
                Messages per event:{" "}
                {Object.entries(r.delivery_events)
                  .map(([event, n]) => `${event.replace("_", " ")} ${fmt.count(n)}`)
                  .join(", ")}
                {r.last_delivery ? `; the latest: ${r.last_delivery.event} at ${fmt.time(r.last_delivery.at)}.` : "."}
              </p>
            </section>
          )}
          <section aria-labelledby="messages-title" class="card">
            <h2 id="messages-title">Messages</h2>
            <DataTable
              rows={r.messages}
              caption="Messages sent to this recipient, most recent first"
              rowKey={(m) => m.message_id}
              columns={[
                { id: "message_id", header: "Message", value: (m) => m.message_id, render: (m) => <a href={href.message(m.message_id)}>{m.message_id}</a> },
                { id: "campaign_id", header: "Campaign", value: (m) => m.campaign_id, render: (m) => <a href={href.campaign(m.campaign_id)}>{m.campaign_id}</a> },
                { id: "sent_at", header: "Sent", value: (m) => m.sent_at, render: (m) => fmt.time(m.sent_at) },
                { id: "opens", header: "Opens", numeric: true, value: (m) => m.opens, render: (m) => <Num value={m.opens} testid={`recipient_message-${m.message_id}-opens`} /> },
                { id: "clicks", header: "Clicks", numeric: true, value: (m) => m.clicks, render: (m) => <Num value={m.clicks} testid={`recipient_message-${m.message_id}-clicks`} /> },
                { id: "first_open_at", header: "First open", value: (m) => m.first_open_at, render: (m) => fmt.time(m.first_open_at) },
              ]}
            />
            {r.more_messages && <p class="muted">Only the most recent messages are listed.</p>}
          </section>
          <section aria-labelledby="history-title" class="card">
            <h2 id="history-title">Recent opens</h2>
            <DataTable
              rows={r.open_history}
              caption="This recipient's most recent opens"
              rowKey={(o) => `${o.at}-${o.message_id}`}
              empty="No open yet."
              columns={[
                { id: "at", header: "When (UTC)", value: (o) => o.at, render: (o) => fmt.time(o.at) },
                { id: "message_id", header: "Message", value: (o) => o.message_id, render: (o) => <a href={href.message(o.message_id)}>{o.message_id}</a> },
                { id: "client", header: "Client", value: (o) => o.client },
                { id: "device", header: "Device", value: (o) => o.device },
                { id: "where", header: "Where", value: (o) => [o.city, o.country].filter(Boolean).join(", ") || null },
              ]}
            />
          </section>
          <section aria-labelledby="rbest-title" class="card">
            <h2 id="rbest-title">Best time to send</h2>
            <BestTimeView best={r.best_time_to_send} />
          </section>
        </>
      )}
    </article>
  );
}
