// Read time (issue 18): how long timed opens stayed on screen, as the API counts it. The campaign report's
// card (the distribution, the median, the same per mail client), an open's read time in a message's timeline,
// and a `read` notice in the live feed. Nothing is computed here: every number is the API's.
import type { BreakdownRow, Notice, ReadTime } from "../api";
import * as fmt from "../format";
import { Num, Stat } from "../stat";
import { DataTable } from "../table";

const CATEGORIES = [
  { key: "read", label: "Read", color: "#1f5fbf", means: "on screen 8 seconds or more" },
  { key: "skimmed", label: "Skimmed", color: "#5b8fd9", means: "2 to 8 seconds" },
  { key: "glanced", label: "Glanced", color: "#a9c4ec", means: "under 2 seconds" },
  { key: "unknown", label: "Unknown", color: "#d1d5db", means: "could not be measured" },
] as const;

/** Whether ``rt`` has any timed open (the API gives zeros and a null median when there is none). */
export const hasReadTime = (rt: ReadTime | null | undefined): rt is ReadTime =>
  !!rt && rt.read + rt.skimmed + rt.glanced + rt.unknown > 0;

/** The campaign report's read-time card; nothing when the campaign has no timed opens. */
export function ReadTimeCard({ readTime, clients }: { readTime: ReadTime | null | undefined; clients: BreakdownRow[] | null }) {
  if (!hasReadTime(readTime)) return null;
  const rows = (clients ?? []).filter((r) => hasReadTime(r.read_time));
  return (
    <section aria-labelledby="read-time-title" class="card" data-testid="read-time">
      <h2 id="read-time-title">Read time</h2>
      <dl class="stats">
        {CATEGORIES.map((c) => (
          <Stat key={c.key} field={c.key} label={c.label} value={readTime[c.key]} prefix="read_time" />
        ))}
        <Stat field="measured" label="Measured" value={readTime.measured} prefix="read_time" />
        <div class="stat">
          <dt>Median of the measured</dt>
          <dd data-testid="read_time-median_seconds" data-value={readTime.median_seconds ?? ""}>
            {fmt.seconds(readTime.median_seconds)}
          </dd>
        </div>
      </dl>
      <Distribution rt={readTime} />
      <p class="muted">
        For messages sent with read time on, the tracking image arrives slowly, a frame a second, and the time until the mail app
        stops loading it is the time the email stayed open. Unknown means nothing a reader did could be measured: an image proxy
        (Gmail, Yahoo), Apple's privacy prefetch, a security scanner or a bot fetched the whole image at once, or the server was
        already holding as many images as it may. The median is of the measured opens only.
      </p>
      {rows.length > 0 && (
        <DataTable
          rows={rows}
          caption="Read time by mail client"
          rowKey={(r) => r.key ?? ""}
          initialSort={[{ id: "measured", desc: true }]}
          columns={[
            { id: "key", header: "Mail client", value: (r) => r.key ?? "Unknown" },
            ...CATEGORIES.map((c) => ({
              id: c.key,
              header: c.label,
              numeric: true,
              value: (r: BreakdownRow) => r.read_time?.[c.key] ?? null,
              render: (r: BreakdownRow) => <Num value={r.read_time?.[c.key]} testid={`read_time-client-${r.key ?? "unknown"}-${c.key}`} />,
            })),
            {
              id: "measured",
              header: "Measured",
              numeric: true,
              value: (r) => r.read_time?.measured ?? null,
              render: (r) => <Num value={r.read_time?.measured} testid={`read_time-client-${r.key ?? "unknown"}-measured`} />,
            },
            {
              id: "median_seconds",
              header: "Median",
              numeric: true,
              value: (r) => r.read_time?.median_seconds ?? null,
              render: (r) => (
                <span data-testid={`read_time-client-${r.key ?? "unknown"}-median_seconds`} data-value={r.read_time?.median_seconds ?? ""}>
                  {fmt.seconds(r.read_time?.median_seconds)}
                </span>
              ),
            },
          ]}
        />
      )}
    </section>
  );
}

/** The four categories as one bar, each part as wide as its share of the timed opens. */
function Distribution({ rt }: { rt: ReadTime }) {
  const total = rt.read + rt.skimmed + rt.glanced + rt.unknown;
  const said = CATEGORIES.map((c) => `${c.label.toLowerCase()} ${fmt.count(rt[c.key])}`).join(", ");
  return (
    <div role="img" aria-label={`Timed opens: ${said}`} style={{ margin: "0 0 0.6rem" }}>
      <div style={{ display: "flex", height: "1.1rem", borderRadius: "4px", overflow: "hidden", border: "1px solid #e5e7eb" }}>
        {CATEGORIES.filter((c) => rt[c.key] > 0).map((c) => (
          <span key={c.key} title={`${c.label}: ${fmt.count(rt[c.key])} (${c.means})`} style={{ width: `${(100 * rt[c.key]) / total}%`, background: c.color }} />
        ))}
      </div>
      <p class="muted" aria-hidden="true" style={{ margin: "0.3rem 0 0" }}>
        {CATEGORIES.map((c) => (
          <span key={c.key} style={{ marginRight: "1rem", display: "inline-block", whiteSpace: "nowrap" }}>
            <span style={{ display: "inline-block", width: "0.7rem", height: "0.7rem", background: c.color, marginRight: "0.3rem" }} />
            {c.label} ({c.means})
          </span>
        ))}
      </p>
    </div>
  );
}

/** An open's read time in a timeline row: "6.2 s, skimmed"; "unknown"; nothing when it was not timed. */
export function ReadCell({ seconds, category, testid }: { seconds: number | null | undefined; category: string | null | undefined; testid: string }) {
  if (!category) return null;
  return (
    <span data-testid={testid} data-value={seconds ?? ""} data-category={category}>
      {seconds === null || seconds === undefined ? category : `${fmt.seconds(seconds)}, ${category}`}
    </span>
  );
}

/** What a live `read` notice adds to its line: " · 6.2 s, skimmed". */
export function readDetail(n: Notice): string {
  if (n.type !== "read") return "";
  const s = typeof n.read_seconds === "number" ? `${fmt.seconds(n.read_seconds)}, ` : "";
  return ` · ${s}${n.read_category ?? "unknown"}`;
}
