// Campaigns: the account's campaigns (GET /v1/campaigns, searched by the API's `q`), one request per page:
// each row's numbers, rates and daily trend are the list's own fields; sorted in the page.
import { useEffect, useMemo, useState } from "preact/hooks";
import { get, type CampaignItem, type Page } from "../api";
import { Chart, loadEcharts } from "../charts";
import { useReady } from "../hooks";
import * as fmt from "../format";
import { href } from "../route";
import { Num } from "../stat";
import { DataTable, type Column } from "../table";
import { EmptyState } from "./EmptyState";

type Row = CampaignItem;

function Sparkline({ points, id }: { points: number[]; id: string }) {
  const option = useMemo(
    () => ({
      grid: { left: 1, right: 1, top: 2, bottom: 2 },
      xAxis: { type: "category", show: false, data: points.map((_, i) => i) },
      yAxis: { type: "value", show: false, min: 0 },
      // One day of data is one point: drawn as a dot, since a line needs two.
      series: [{ type: "line", data: points, showSymbol: points.length < 2, symbolSize: 5, lineStyle: { width: 1.5 }, areaStyle: { opacity: 0.15 } }],
    }),
    [points.join()],
  );
  return <Chart option={option} height={28} className="spark" label={`Opens per day of ${id}: ${points.join(", ")}`} />;
}

export function Campaigns() {
  const [query, setQuery] = useState("");
  const [applied, setApplied] = useState("");
  const [rows, setRows] = useState<Row[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [more, setMore] = useState<string | null>(null);
  const [state, setState] = useState<"loading" | "ready" | "error">("loading");
  const [error, setError] = useState("");

  useEffect(() => void loadEcharts(), []);

  useEffect(() => {
    const abort = new AbortController();
    const params = new URLSearchParams({ limit: "50" });
    if (applied) params.set("q", applied);
    if (cursor) params.set("cursor", cursor);
    setState("loading");
    get<Page<CampaignItem>>(`/v1/campaigns?${params}`, abort.signal).then(
      (page) => {
        const fresh: Row[] = page.items;
        setRows((old) => (cursor ? [...old, ...fresh] : fresh));
        setMore(page.next_cursor);
        setState("ready");
      },
      (e: Error) => {
        if (abort.signal.aborted) return;
        setError(e.message);
        setState("error");
      },
    );
    return () => abort.abort();
  }, [applied, cursor]);

  const columns: Column<Row>[] = [
    {
      id: "campaign_id",
      header: "Campaign",
      value: (r) => r.campaign_id,
      render: (r) => <a href={href.campaign(r.campaign_id)}>{r.campaign_id}</a>,
    },
    { id: "last_sent_at", header: "Last sent", value: (r) => r.last_sent_at, render: (r) => fmt.time(r.last_sent_at) },
    { id: "sent", header: "Sent", numeric: true, value: (r) => r.sent, render: (r) => <Num value={r.sent} testid={`campaign-${r.campaign_id}-sent`} /> },
    {
      id: "delivered",
      header: "Delivered",
      numeric: true,
      value: (r) => r.delivered ?? null,
      // The list's own field (issue 16), null until the campaign has delivery events: a dash, no number.
      render: (r) =>
        typeof r.delivered === "number" ? <Num value={r.delivered} testid={`campaign-${r.campaign_id}-delivered`} /> : "—",
    },
    {
      id: "unique_opens",
      header: "Unique opens",
      numeric: true,
      value: (r) => r.unique_opens,
      render: (r) => <Num value={r.unique_opens} testid={`campaign-${r.campaign_id}-unique_opens`} />,
    },
    {
      id: "open_rate",
      header: "Open rate",
      numeric: true,
      value: (r) => r.open_rate,
      render: (r) => <Num kind="rate" value={r.open_rate} testid={`campaign-${r.campaign_id}-open_rate`} />,
    },
    { id: "clicks", header: "Clicks", numeric: true, value: (r) => r.clicks, render: (r) => <Num value={r.clicks} testid={`campaign-${r.campaign_id}-clicks`} /> },
    {
      id: "click_rate",
      header: "Click rate",
      numeric: true,
      value: (r) => r.click_rate,
      render: (r) => <Num kind="rate" value={r.click_rate} testid={`campaign-${r.campaign_id}-click_rate`} />,
    },
    {
      id: "trend",
      header: "Trend",
      value: (r) => r.opens,
      render: (r) =>
        r.opens_by_day.length ? (
          <Sparkline points={r.opens_by_day.map((d) => d.opens)} id={r.campaign_id} />
        ) : (
          <span class="muted">no opens</span>
        ),
    },
  ];

  const search = (event: Event) => {
    event.preventDefault();
    setCursor(null);
    setApplied(query.trim());
  };

  useReady("campaigns", state === "ready");
  if (state === "ready" && !rows.length && !applied) return <EmptyState />;

  return (
    <section aria-labelledby="campaigns-title">
      <h1 id="campaigns-title">Campaigns</h1>
      <form class="toolbar" role="search" onSubmit={search}>
        <label for="campaign-search">Search campaigns</label>
        <input id="campaign-search" type="search" value={query} onInput={(e) => setQuery((e.target as HTMLInputElement).value)} />
        <button type="submit">Search</button>
      </form>
      <GoTo />
      {state === "error" && <p class="error" role="alert">Could not load the campaigns: {error}</p>}
      <DataTable
        rows={rows}
        columns={columns}
        caption="Campaigns, most recently sent first; select a column header to sort"
        rowKey={(r) => r.campaign_id}
        empty={state === "loading" ? "Loading…" : `No campaign matches “${applied}”.`}
      />
      {more && (
        <button type="button" class="secondary" onClick={() => setCursor(more)} disabled={state === "loading"}>
          Load more campaigns
        </button>
      )}
      <p class="muted" role="status">{state === "loading" ? "Loading…" : `${rows.length} campaign${rows.length === 1 ? "" : "s"} shown`}</p>
    </section>
  );
}

/** Open a message or a recipient by its id or address. */
function GoTo() {
  const go = (event: Event) => {
    event.preventDefault();
    const form = event.currentTarget as HTMLFormElement;
    const kind = (form.elements.namedItem("kind") as HTMLSelectElement).value;
    const value = (form.elements.namedItem("lookup") as HTMLInputElement).value.trim();
    if (value) location.hash = kind === "message" ? href.message(value) : href.recipient(value);
  };
  return (
    <form class="toolbar" onSubmit={go}>
      <label for="lookup-kind">Open a</label>
      <select id="lookup-kind" name="kind">
        <option value="message">message by id</option>
        <option value="recipient">recipient by address</option>
      </select>
      <label for="lookup" class="sr-only">Message id or recipient address</label>
      <input id="lookup" name="lookup" type="text" />
      <button type="submit">Open</button>
    </form>
  );
}
