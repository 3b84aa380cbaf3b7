// A campaign's report. Every part comes in one answer (GET /v1/campaigns/{id}/report, fetched alongside the
// charts library), each as its own route gives it. The live feed adds opens and clicks to the counters as they come, without a request
// per hit: the summary is re-read at most once every RECONCILE_MS to pick up the API's exact numbers.
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import {
  enc,
  type Breakdown,
  type BreakdownRow,
  type Filtered,
  type Notice,
  type Report,
  type Summary,
  type TimeSeries,
} from "../api";
import { Chart, loadEcharts, loadedWorldMap, loadWorldMap } from "../charts";
import * as fmt from "../format";
import { useGet, useReady, type Loaded } from "../hooks";
import { useLive } from "../live";
import { explain } from "../reasons";
import { href } from "../route";
import { Num, Stat } from "../stat";
import { DataTable } from "../table";
import { BestTimeView } from "./BestTime";
import { ExportCard } from "./Exports";
import { ReadTimeCard, readDetail } from "./ReadTime";

const RECONCILE_MS = 10_000;
const FEED_SIZE = 50;
const DIMENSIONS = [
  { by: "client", title: "Mail clients" },
  { by: "device", title: "Devices" },
  { by: "os", title: "Operating systems" },
  { by: "country", title: "Countries" },
] as const;

let zoneList: string[] | null = null; // some 430 names: listed once, not at every render of the report

function zones(): string[] {
  if (zoneList) return zoneList;
  const own = ownZone();
  const all = (Intl as unknown as { supportedValuesOf?: (k: string) => string[] }).supportedValuesOf?.("timeZone") ?? [];
  zoneList = Array.from(new Set(["UTC", own, ...all]));
  return zoneList;
}

type Bucket = "minute" | "hour" | "day";
const ownZone = (): string => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

/** Every API path the report reads, for these choices (also prefetched at boot, main.tsx). */
export function reportPaths(id: string, includeMachine = false, bucket: Bucket = "hour", tz = ownZone()) {
  const base = `/v1/campaigns/${enc(id)}`;
  const machine = includeMachine ? "true" : "false";
  return {
    summary: `${base}/summary?include_machine=${machine}`,
    series: `${base}/timeseries?bucket=${bucket}&tz=${enc(tz)}&include_machine=${machine}`,
    links: `${base}/links`,
    filtered: `${base}/filtered`,
    best: `${base}/best-time`,
    client: `${base}/breakdown?by=client&include_machine=${machine}`,
    device: `${base}/breakdown?by=device&include_machine=${machine}`,
    os: `${base}/breakdown?by=os&include_machine=${machine}`,
    country: `${base}/breakdown?by=country&include_machine=${machine}`,
    // Every part above in one answer: what the report draws first (one request, one campaign check).
    report: `${base}/report?bucket=${bucket}&tz=${enc(tz)}&include_machine=${machine}`,
  };
}

export function CampaignReport({ id }: { id: string }) {
  const [includeMachine, setIncludeMachine] = useState(false);
  const [bucket, setBucket] = useState<Bucket>("hour");
  const [tz, setTz] = useState(ownZone);
  const paths = reportPaths(id, includeMachine, bucket, tz);
  const [reconciled, setReconciled] = useState(0);
  const zoneOptions = useMemo(() => zones().map((z) => <option key={z} value={z}>{z}</option>), []);

  const [chartsReady, setChartsReady] = useState(false);
  useEffect(() => void Promise.all([loadEcharts(), loadWorldMap()]).then(() => setChartsReady(true)), []);
  // The report in one request; the summary alone again when the live feed asks for the exact numbers.
  const report = useGet<Report>(paths.report);
  const summaryAgain = useGet<Summary>(reconciled > 0 ? paths.summary : null, reconciled);
  const r = report.data;
  const part = <T,>(data: T | undefined): Loaded<T> => ({ data: data ?? null, error: report.error, loading: report.loading });
  const summary = reconciled > 0 && summaryAgain.data ? summaryAgain : part(r?.summary);
  const series = part(r?.timeseries);
  const links = part(r ? { links: r.links } : undefined);
  const filtered = part(r?.filtered);
  const best = part(r ? { best_time_to_send: r.best_time_to_send } : undefined);
  const breakdowns = {
    client: part(r?.breakdowns.client),
    device: part(r?.breakdowns.device),
    os: part(r?.breakdowns.os),
    country: part(r?.breakdowns.country),
  };
  const parts = [summary, series, links, filtered, best, ...Object.values(breakdowns)];
  useReady("report", chartsReady && parts.every((p) => !p.loading && (p.data !== null || p.error !== null)));

  // Live: count locally at once, re-read the summary at most every RECONCILE_MS.
  const [feed, setFeed] = useState<Notice[]>([]);
  const [local, setLocal] = useState({ opens: 0, unique_opens: 0, clicks: 0 });
  const timer = useRef<number | null>(null);
  useEffect(() => setLocal({ opens: 0, unique_opens: 0, clicks: 0 }), [summary.data]);
  useEffect(() => () => void (timer.current !== null && clearTimeout(timer.current)), []);
  const onNotice = useCallback(
    (notice: Notice) => {
      if (notice.campaign_id !== id) return;
      setFeed((old) => [notice, ...old].slice(0, FEED_SIZE));
      if (notice.type === "open" || (notice.type === "machine_open" && includeMachine)) {
        setLocal((l) => ({ ...l, opens: l.opens + 1, unique_opens: l.unique_opens + (notice.first ? 1 : 0) }));
      } else if (notice.type === "click") {
        setLocal((l) => ({ ...l, clicks: l.clicks + 1 }));
      }
      if (timer.current === null) {
        timer.current = window.setTimeout(() => {
          timer.current = null;
          setReconciled((n) => n + 1);
        }, RECONCILE_MS);
      }
    },
    [id, includeMachine],
  );
  const live = useLive(onNotice, includeMachine);

  const s = summary.data;
  const shown: Summary | null = s
    ? { ...s, opens: s.opens + local.opens, unique_opens: s.unique_opens + local.unique_opens, clicks: s.clicks + local.clicks }
    : null;

  return (
    <article aria-labelledby="report-title" class="report">
      <p class="crumbs">
        <a href={href.campaigns}>Campaigns</a> /
      </p>
      <h1 id="report-title">{id}</h1>
      <div class="toolbar">
        <label class="check">
          <input type="checkbox" checked={includeMachine} onChange={(e) => setIncludeMachine((e.target as HTMLInputElement).checked)} />
          Include machine opens (Apple Mail Privacy Protection, Gmail prefetch, security gateways) in opens
        </label>
      </div>

      <section aria-labelledby="numbers-title">
        <h2 id="numbers-title">Numbers</h2>
        {summary.error && <p class="error" role="alert">{summary.error}</p>}
        {!shown && !summary.error && <p class="muted">Loading…</p>}
        {shown && <Numbers s={shown} />}
      </section>

      <div class="grid2">
        <section aria-labelledby="funnel-title" class="card">
          <h2 id="funnel-title">Funnel</h2>
          {shown && <Funnel s={shown} />}
        </section>
        <section aria-labelledby="who-title" class="card">
          <h2 id="who-title">People, machines and bots</h2>
          {shown && <WhoOpened s={shown} />}
        </section>
      </div>

      <ReadTimeCard readTime={shown?.read_time} clients={breakdowns.client.data?.rows ?? null} />

      <section aria-labelledby="time-title" class="card">
        <h2 id="time-title">Opens and clicks over time</h2>
        <div class="toolbar">
          <label for="bucket">Bucket</label>
          <select id="bucket" value={bucket} onChange={(e) => setBucket((e.target as HTMLSelectElement).value as typeof bucket)}>
            <option value="minute">minute</option>
            <option value="hour">hour</option>
            <option value="day">day</option>
          </select>
          <label for="tz">Time zone</label>
          <select id="tz" value={tz} onChange={(e) => setTz((e.target as HTMLSelectElement).value)}>
            {zoneOptions}
          </select>
        </div>
        {series.error && <p class="error" role="alert">{series.error}</p>}
        {series.data && <SeriesView series={series.data} />}
      </section>

      <section aria-labelledby="live-title" class="card">
        <h2 id="live-title">
          Live <span class={`badge ${live}`} data-testid="live-state">{live === "live" ? "connected" : live}</span>
        </h2>
        <LiveFeed feed={feed} />
      </section>

      <section aria-labelledby="breakdowns-title">
        <h2 id="breakdowns-title">Breakdowns</h2>
        <div class="grid2">
          {DIMENSIONS.map((d) => (
            <BreakdownCard key={d.by} by={d.by} title={d.title} data={breakdowns[d.by]} />
          ))}
        </div>
      </section>

      <section aria-labelledby="links-title" class="card">
        <h2 id="links-title">Top links</h2>
        {links.error && <p class="error" role="alert">{links.error}</p>}
        {links.data && (
          <DataTable
            rows={links.data.links}
            caption="Clicked links, most human clicks first"
            rowKey={(r) => String(r.link_index)}
            empty="No link clicked yet."
            columns={[
              { id: "url", header: "Link", value: (r) => r.url, render: (r) => <span class="url">{r.url}</span> },
              { id: "clicks", header: "Clicks", numeric: true, value: (r) => r.clicks, render: (r) => <Num value={r.clicks} testid={`link-${r.link_index}-clicks`} /> },
              { id: "unique_clicks", header: "Unique clicks", numeric: true, value: (r) => r.unique_clicks, render: (r) => <Num value={r.unique_clicks} testid={`link-${r.link_index}-unique_clicks`} /> },
              { id: "bot_clicks", header: "Bot clicks", numeric: true, value: (r) => r.bot_clicks, render: (r) => <Num value={r.bot_clicks} testid={`link-${r.link_index}-bot_clicks`} /> },
            ]}
          />
        )}
      </section>

      <section aria-labelledby="filtered-title" class="card">
        <h2 id="filtered-title">Filtered hits</h2>
        {filtered.error && <p class="error" role="alert">{filtered.error}</p>}
        {filtered.data && <FilteredView f={filtered.data} />}
      </section>

      <section aria-labelledby="best-title" class="card">
        <h2 id="best-title">Best time to send</h2>
        {best.error && <p class="error" role="alert">{best.error}</p>}
        {best.data && <BestTimeView best={best.data.best_time_to_send} />}
      </section>

      <ExportCard campaign={id} />
    </article>
  );
}

/** Whether the campaign has delivery numbers: issue 16's API says so (`delivery_data`); before it, none. */
const delivers = (s: Summary): boolean => s.delivery_data ?? (s.delivered !== undefined && s.delivered !== null);

function Numbers({ s }: { s: Summary }) {
  const has = (k: keyof Summary) => delivers(s) && s[k] !== undefined;
  return (
    <dl class="stats">
      <Stat field="sent" label="Sent" value={s.sent} />
      {has("delivered") && <Stat field="delivered" label="Delivered" value={s.delivered} />}
      {has("delivery_rate") && <Stat field="delivery_rate" label="Delivery rate" value={s.delivery_rate} kind="rate" />}
      {has("bounced") && <Stat field="bounced" label="Bounced" value={s.bounced} />}
      {has("bounce_rate") && <Stat field="bounce_rate" label="Bounce rate" value={s.bounce_rate} kind="rate" />}
      {has("complaints") && <Stat field="complaints" label="Complaints" value={s.complaints} />}
      {has("complaint_rate") && <Stat field="complaint_rate" label="Complaint rate" value={s.complaint_rate} kind="rate" />}
      {has("deferred") && <Stat field="deferred" label="Deferred" value={s.deferred} />}
      {has("dropped") && <Stat field="dropped" label="Dropped" value={s.dropped} />}
      {has("unsubscribes") && <Stat field="unsubscribes" label="Unsubscribes" value={s.unsubscribes} />}
      <Stat field="unique_opens" label="Unique opens" value={s.unique_opens} />
      <Stat field="open_rate" label="Open rate" value={s.open_rate} kind="rate" />
      {s.mpp_adjusted_open_rate !== undefined && (
        <>
          <Stat field="mpp_adjusted_open_rate" label="MPP-adjusted open rate" value={s.mpp_adjusted_open_rate} kind="rate" />
          <Stat field="mpp_only_messages" label="MPP-only messages" value={s.mpp_only_messages} />
          <Stat field="implied_opens" label="Implied opens" value={s.implied_opens} />
          <div class="stat note">
            <dt>What these mean</dt>
            <dd class="muted" data-testid="mpp-explained">
              MPP-adjusted: the open rate without messages only Apple Mail Privacy Protection's prefetch opened
              (whether anyone read them is hidden). Implied opens: a person clicked, the pixel never loaded.
            </dd>
          </div>
        </>
      )}
      <Stat field="opens" label="Opens" value={s.opens} />
      <Stat field="clicks" label="Clicks" value={s.clicks} />
      <Stat field="unique_clicks" label="Unique clicks" value={s.unique_clicks} />
      <Stat field="click_rate" label="Click rate" value={s.click_rate} kind="rate" />
      <Stat field="machine_opens" label="Machine opens" value={s.machine_opens} />
      <Stat field="bot_opens" label="Bot opens" value={s.bot_opens} />
      <Stat field="bot_clicks" label="Bot clicks" value={s.bot_clicks} />
      {s.rate_basis && (
        <div class="stat">
          <dt>Open and click rates over</dt>
          <dd data-testid="stat-rate_basis">{s.rate_basis === "delivered" ? "delivered" : "sent"}</dd>
        </div>
      )}
    </dl>
  );
}

function Funnel({ s }: { s: Summary }) {
  const steps: [string, number][] = [["Sent", s.sent]];
  if (delivers(s) && typeof s.delivered === "number") steps.push(["Delivered", s.delivered]);
  steps.push(["Opened", s.unique_opens], ["Clicked", s.unique_clicks]);
  const option = useMemo(
    () => ({
      tooltip: { trigger: "item" },
      series: [
        {
          type: "funnel",
          sort: "none",
          left: "3%",
          width: "62%",
          minSize: "6%",
          label: { position: "right", formatter: "{b}: {c}", color: "#111827" },
          labelLine: { show: true },
          data: steps.map(([name, value]) => ({ name, value })),
        },
      ],
    }),
    [steps.map((x) => x[1]).join()],
  );
  const label = `Funnel: ${steps.map(([n, v]) => `${n} ${fmt.count(v)}`).join(", ")}`;
  return (
    <>
      <Chart option={option} label={label} height={220} />
      <p class="muted">
        {label}
        {delivers(s) && typeof s.bounced === "number" && ` · bounced ${fmt.count(s.bounced)}`}
        {delivers(s) && s.bounces && ` (hard ${fmt.count(s.bounces.hard)}, soft ${fmt.count(s.bounces.soft)})`}
        {delivers(s) && typeof s.complaints === "number" && ` · complaints ${fmt.count(s.complaints)}`}
        {!delivers(s) && " · no delivery events from a mail service yet"}
        {!!s.implied_opens && ` · opened includes ${fmt.count(s.implied_opens)} implied by a click`}
      </p>
    </>
  );
}

function WhoOpened({ s }: { s: Summary }) {
  const people = s.include_machine ? s.opens - s.machine_opens : s.opens;
  const option = useMemo(
    () => ({
      tooltip: { trigger: "axis" },
      grid: { left: 110, right: 30, top: 10, bottom: 25, containLabel: false },
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", inverse: true, data: ["People", "Machine opens", "Bots"] },
      series: [{ type: "bar", data: [people, s.machine_opens, s.bot_opens], colorBy: "data", label: { show: true, position: "right" } }],
    }),
    [people, s.machine_opens, s.bot_opens],
  );
  return (
    <>
      <Chart option={option} height={160} label={`Opens by people ${people}, machine opens ${s.machine_opens}, bot opens ${s.bot_opens}`} />
      <p class="muted">
        People: opens by readers, directly or through Gmail's or Yahoo's image proxy. Machine opens: images loaded by Apple Mail
        Privacy Protection, Gmail's prefetch or security gateways without the reader opening
        {s.include_machine ? " (counted in opens now)" : " (not in opens unless included above)"}. Bots: scripts and crawlers, counted
        nowhere.
      </p>
    </>
  );
}

function SeriesView({ series }: { series: TimeSeries }) {
  const points = series.series;
  const [open, setOpen] = useState(false); // the table is drawn only when asked for: a month is 720 rows
  const option = useMemo(() => {
    const names = points.map((p) => p.t.slice(0, series.bucket === "day" ? 10 : 16).replace("T", " "));
    // A long campaign is thousands of hours: its bars are drawn in one batch (ECharts' large mode).
    const lines = [
      { name: "Opens", type: "line", data: points.map((p) => p.opens), showSymbol: points.length < 60 },
      { name: "Clicks", type: "line", data: points.map((p) => p.clicks), showSymbol: points.length < 60 },
      { name: "Machine opens", type: "bar", data: points.map((p) => p.machine_opens), barMaxWidth: 12, large: true },
    ];
    return {
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 45, right: 15, top: 35, bottom: 40 },
      // About a dozen labels, chosen here: ECharts' own choice measures the labels of every bucket.
      xAxis: { type: "category", data: names, axisLabel: { interval: Math.max(0, Math.ceil(names.length / 12) - 1) } },
      yAxis: { type: "value", minInterval: 1 },
      series: lines,
    };
  }, [points, series.bucket]);
  if (!points.length) return <p class="muted">No opens or clicks yet.</p>;
  return (
    <>
      <Chart option={option} label={`Opens, clicks and machine opens per ${series.bucket} in ${series.tz}`} height={280} />
      <details onToggle={(e) => setOpen((e.currentTarget as HTMLDetailsElement).open)}>
        <summary>As a table</summary>
        {open && (
        <DataTable
          rows={points}
          caption={`Per ${series.bucket}, ${series.tz}`}
          rowKey={(p) => p.t}
          columns={[
            { id: "t", header: "From", value: (p) => p.t },
            { id: "opens", header: "Opens", numeric: true, value: (p) => p.opens },
            { id: "unique_opens", header: "Unique opens", numeric: true, value: (p) => p.unique_opens },
            { id: "clicks", header: "Clicks", numeric: true, value: (p) => p.clicks },
            { id: "machine_opens", header: "Machine opens", numeric: true, value: (p) => p.machine_opens },
          ]}
        />
        )}
      </details>
    </>
  );
}

function BreakdownCard({ by, title, data }: { by: string; title: string; data: Loaded<Breakdown> }) {
  const rows = data.data?.rows ?? [];
  const top = rows.slice(0, 10);
  const option = useMemo(
    () => ({
      tooltip: { trigger: "axis" },
      grid: { left: 120, right: 40, top: 5, bottom: 20 },
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", inverse: true, data: top.map((r) => r.key ?? "Unknown"), axisLabel: { width: 110, overflow: "truncate" } },
      series: [{ type: "bar", name: "Opens", data: top.map((r) => r.opens), label: { show: true, position: "right" } }],
    }),
    [data.data],
  );
  return (
    <section class="card" aria-labelledby={`bd-${by}`}>
      <h3 id={`bd-${by}`}>{title}</h3>
      {data.error && <p class="error" role="alert">{data.error}</p>}
      {by === "country" && rows.some((r) => r.key) && <WorldMap rows={rows} />}
      {data.data && rows.length > 0 && <Chart option={option} height={Math.max(80, top.length * 26 + 30)} label={`${title} ranked by opens`} />}
      {data.data && (
        <DataTable
          rows={rows}
          caption={`${title}: opens, unique opens and clicks`}
          rowKey={(r) => r.key ?? ""}
          initialSort={[{ id: "opens", desc: true }]}
          empty="No opens yet."
          columns={[
            { id: "key", header: title.replace(/s$/, "").replace("Countrie", "Country"), value: (r) => r.key ?? "Unknown" },
            { id: "opens", header: "Opens", numeric: true, value: (r) => r.opens, render: (r) => <Num value={r.opens} testid={`breakdown-${by}-${r.key ?? "unknown"}-opens`} /> },
            { id: "unique_opens", header: "Unique opens", numeric: true, value: (r) => r.unique_opens, render: (r) => <Num value={r.unique_opens} testid={`breakdown-${by}-${r.key ?? "unknown"}-unique_opens`} /> },
            { id: "clicks", header: "Clicks", numeric: true, value: (r) => r.clicks, render: (r) => <Num value={r.clicks} testid={`breakdown-${by}-${r.key ?? "unknown"}-clicks`} /> },
          ]}
        />
      )}
    </section>
  );
}

/** Opens per country on a world map; countries the atlas has no shape for are still in the ranking below. */
function WorldMap({ rows }: { rows: BreakdownRow[] }) {
  // At once when its chunk is in (the report is marked drawn only then), so the map is drawn with the rest.
  const [atlas, setAtlas] = useState<{ atlasName: (code: string) => string | null } | null>(loadedWorldMap);
  useEffect(() => void (atlas || loadWorldMap().then(setAtlas)), []);
  const option = useMemo(() => {
    if (!atlas) return null;
    const data = rows
      .filter((r) => r.key)
      .map((r) => ({ name: atlas.atlasName(r.key!), value: r.opens, code: r.key }))
      .filter((d) => d.name !== null);
    const max = Math.max(1, ...data.map((d) => d.value));
    return {
      tooltip: { trigger: "item", formatter: (p: { name: string; value: number }) => `${p.name}: ${Number.isFinite(p.value) ? p.value : 0} opens` },
      visualMap: { min: 0, max, left: 0, bottom: 0, calculable: true, inRange: { color: ["#dbe7f8", "#1f5fbf"] }, itemHeight: 80 },
      series: [{ type: "map", map: "world", roam: false, name: "Opens", data, itemStyle: { areaColor: "#eef2f7", borderColor: "#9ca3af" }, emphasis: { label: { show: false } } }],
    };
  }, [atlas, rows]);
  if (!option) return null;
  const placed = rows.filter((r) => r.key).map((r) => `${r.key} ${r.opens}`).join(", ");
  return <Chart option={option} height={240} label={`World map of opens by country: ${placed || "none located"}`} />;
}

function FilteredView({ f }: { f: Filtered }) {
  const machine = Object.entries(f.machine_opens_by_reason).map(([reason, hits]) => ({ reason, hits }));
  return (
    <>
      <p>
        <Num value={f.filtered_total} testid="filtered-total" /> hits were counted nowhere (bots, scripts, forged links), and{" "}
        <Num value={f.machine_opens} testid="filtered-machine_opens" /> were machine opens.
      </p>
      <DataTable
        rows={f.filtered}
        caption="Filtered hits by reason"
        rowKey={(r) => `${r.kind}-${r.verdict}-${r.reason}`}
        initialSort={[{ id: "hits", desc: true }]}
        empty="No hit was filtered."
        columns={[
          { id: "reason", header: "Reason", value: (r) => r.reason, render: (r) => <code>{r.reason}</code> },
          { id: "kind", header: "Hit", value: (r) => r.kind },
          { id: "hits", header: "Hits", numeric: true, value: (r) => r.hits, render: (r) => <Num value={r.hits} testid={`filtered-${r.kind}-${r.reason}`} /> },
          { id: "why", header: "What it means", value: (r) => explain(r.reason) },
        ]}
      />
      {machine.length > 0 && (
        <DataTable
          rows={machine}
          caption="Machine opens by reason"
          rowKey={(r) => r.reason}
          columns={[
            { id: "reason", header: "Machine opens by", value: (r) => r.reason, render: (r) => <code>{r.reason}</code> },
            { id: "hits", header: "Opens", numeric: true, value: (r) => r.hits, render: (r) => <Num value={r.hits} testid={`machine-${r.reason}`} /> },
            { id: "why", header: "What it means", value: (r) => explain(r.reason) },
          ]}
        />
      )}
    </>
  );
}

function LiveFeed({ feed }: { feed: Notice[] }) {
  if (!feed.length) return <p class="muted" aria-live="polite">Waiting for opens and clicks… new ones appear here as they are counted.</p>;
  return (
    <ol class="feed" aria-live="polite" data-testid="live-feed">
      {feed.map((n) => (
        <li key={n.id} data-type={n.type}>
          <time dateTime={n.at}>{fmt.time(n.at).slice(11, 19)}</time> <strong>{n.type.replace("_", " ")}</strong>
          {n.first ? " (first)" : ""} · {n.recipient ?? "—"} · message <a href={href.message(n.message_id)}>{n.message_id}</a>
          {n.client ? ` · ${n.client}` : ""}
          {n.country ? ` · ${n.country}` : ""}
          {n.url ? <span class="url"> · {n.url}</span> : ""}
          {readDetail(n)}
        </li>
      ))}
    </ol>
  );
}
