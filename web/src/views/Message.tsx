// A message: its numbers (GET /v1/messages/{id}) and its timeline of opens, clicks and delivery events.
import { enc, type MessageStats, type TimelineItem } from "../api";
import * as fmt from "../format";
import { useGet, useReady } from "../hooks";
import { href } from "../route";
import { Stat } from "../stat";
import { DataTable } from "../table";
import { ReadCell } from "./ReadTime";

type Row = TimelineItem & { n: number };

export function MessageView({ id }: { id: string }) {
  const stats = useGet<MessageStats>(`/v1/messages/${enc(id)}`);
  const timeline = useGet<{ timeline: TimelineItem[] }>(`/v1/messages/${enc(id)}/timeline`);
  const m = stats.data;
  useReady("message", !stats.loading && !timeline.loading);
  const timed = timeline.data?.timeline.some((item) => item.read_category) ?? false;
  return (
    <article aria-labelledby="message-title">
      <p class="crumbs">
        <a href={href.campaigns}>Campaigns</a> / {m && <a href={href.campaign(m.campaign_id)}>{m.campaign_id}</a>} /
      </p>
      <h1 id="message-title">Message {id}</h1>
      {stats.error && <p class="error" role="alert">{stats.error}</p>}
      {m && (
        <>
          <p>
            To <a href={href.recipient(m.recipient)}>{m.recipient}</a>, sent {fmt.time(m.sent_at)}.
            {typeof m.delivery_status === "string" && (
              <>
                {" "}
                Delivery: <strong data-testid="message-delivery_status">{m.delivery_status}</strong>
                {typeof m.bounce_type === "string" ? ` (${m.bounce_type} bounce)` : ""}.
              </>
            )}
          </p>
          <dl class="stats">
            <Stat field="opens" label="Opens" value={m.opens} prefix="message" />
            <Stat field="machine_opens" label="Machine opens" value={m.machine_opens} prefix="message" />
            <Stat field="clicks" label="Clicks" value={m.clicks} prefix="message" />
            <Stat field="bot_clicks" label="Bot clicks" value={m.bot_clicks} prefix="message" />
            {m.bot_opens !== undefined && <Stat field="bot_opens" label="Bot opens" value={m.bot_opens} prefix="message" />}
            {m.opened !== undefined && (
              <div class="stat">
                <dt>Opened</dt>
                <dd data-testid="message-opened">{m.open_implied ? "yes, implied by a click" : m.opened ? "yes" : "no"}</dd>
              </div>
            )}
            <div class="stat">
              <dt>First open</dt>
              <dd class="time" data-testid="message-first_open_at">{fmt.time(m.first_open_at)}</dd>
            </div>
            <div class="stat">
              <dt>Last open</dt>
              <dd class="time" data-testid="message-last_open_at">{fmt.time(m.last_open_at)}</dd>
            </div>
          </dl>
        </>
      )}
      <section aria-labelledby="timeline-title" class="card">
        <h2 id="timeline-title">Timeline</h2>
        {timeline.error && <p class="error" role="alert">{timeline.error}</p>}
        {timeline.data && (
          <DataTable
            rows={timeline.data.timeline.map((item, i): Row => ({ ...item, n: i }))}
            caption="Every open, click and delivery event of this message, oldest first"
            rowKey={(r) => String(r.n)}
            empty="Nothing yet: no open, click or delivery event."
            columns={[
              { id: "at", header: "When (UTC)", value: (r) => r.at, render: (r) => fmt.time(r.at) },
              {
                id: "kind",
                header: "What",
                // A delivery event is named by what the mail service said (delivered, bounce, complaint…).
                value: (r) => (r.kind === "delivery" ? String(r.event ?? "delivery") : r.kind),
                render: (r) => <span data-testid={`timeline-${r.n}-kind`}>{r.kind === "delivery" ? `${String(r.event ?? "delivery")} (mail service)` : r.kind}</span>,
              },
              { id: "verdict", header: "Counted as", value: (r) => r.verdict ?? null },
              { id: "client", header: "Client", value: (r) => r.client ?? null },
              { id: "device", header: "Device", value: (r) => r.device ?? null },
              { id: "os", header: "OS", value: (r) => r.os ?? null },
              { id: "where", header: "Where", value: (r) => [r.city, r.country].filter(Boolean).join(", ") || null },
              // Read time (issue 18): shown when an open of the message was timed.
              ...(timed
                ? [{ id: "read", header: "Read time", numeric: true, value: (r: Row) => r.read_seconds ?? null, render: (r: Row) => <ReadCell seconds={r.read_seconds} category={r.read_category} testid={`timeline-${r.n}-read`} /> }]
                : []),
              {
                id: "detail",
                header: "Detail",
                value: (r) => {
                  const parts: (string | null | undefined)[] = [r.url, r.via_proxy ? "through a mail proxy" : null];
                  if (r.kind === "delivery") {
                    for (const k of ["bounce_type", "provider", "provider_type", "smtp_status", "smtp_code", "diagnostic"]) {
                      if (r[k] !== null && r[k] !== undefined) parts.push(`${k.replace("_", " ")}: ${String(r[k])}`);
                    }
                  }
                  return parts.filter(Boolean).join(" · ") || null;
                },
              },
            ]}
          />
        )}
      </section>
    </article>
  );
}
