// Segments (issue 20): recipients by engagement. The user combines conditions (all must hold), the page asks
// POST /v1/segments/query with `count: true` and shows the segment's size and its first page, then follows
// `next_cursor` page by page. Every number is the API's (data-testid / data-value, as elsewhere).
import { useState } from "preact/hooks";
import { post, type SegmentPage, type SegmentQuery } from "../api";
import * as fmt from "../format";
import { useReady } from "../hooks";
import { href } from "../route";
import { Num } from "../stat";
import { DataTable } from "../table";
import { STATUS_WORDS } from "./Engagement";
import { SegmentExport } from "./Exports";

interface Form {
  inactiveDays: string;
  minScore: string;
  clickedCampaign: string;
  clickedLink: string;
  openedCampaign: string;
  openedNotClickedCampaign: string;
  machineOnly: boolean;
  bounced: boolean;
  complained: boolean;
  refusedTracking: boolean;
}

const EMPTY: Form = {
  inactiveDays: "",
  minScore: "",
  clickedCampaign: "",
  clickedLink: "",
  openedCampaign: "",
  openedNotClickedCampaign: "",
  machineOnly: false,
  bounced: false,
  complained: false,
  refusedTracking: false,
};

const PAGE = 50;

/** The request body of a form (what e2-exports' segment members export takes too, without limit and cursor). */
export function queryOf(f: Form): SegmentQuery {
  const q: SegmentQuery = {};
  if (f.inactiveDays.trim()) q.inactive_days = Number(f.inactiveDays);
  if (f.minScore) q.min_score = Number(f.minScore);
  if (f.clickedCampaign.trim()) {
    q.clicked = { campaign: f.clickedCampaign.trim() };
    if (f.clickedLink.trim()) q.clicked.link_index = Number(f.clickedLink);
  }
  if (f.openedCampaign.trim()) q.opened = { campaign: f.openedCampaign.trim() };
  if (f.openedNotClickedCampaign.trim()) q.opened_not_clicked = { campaign: f.openedNotClickedCampaign.trim() };
  if (f.machineOnly) q.machine_only = true;
  if (f.bounced) q.bounced = true;
  if (f.complained) q.complained = true;
  if (f.refusedTracking) q.refused_tracking = true;
  return q;
}

function Text({ id, label, value, set, type = "text", hint }: { id: string; label: string; value: string; set: (v: string) => void; type?: "text" | "number"; hint?: string }) {
  const described = hint ? `${id}-hint` : undefined;
  const onInput = (e: Event) => set((e.target as HTMLInputElement).value);
  return (
    <div class="field">
      <label for={id}>{label}</label>
      {type === "number" ? (
        <input id={id} type="number" min={0} value={value} onInput={onInput} aria-describedby={described} />
      ) : (
        <input id={id} type="text" value={value} onInput={onInput} aria-describedby={described} />
      )}
      {hint && (
        <small id={described} class="muted">
          {hint}
        </small>
      )}
    </div>
  );
}

function Check({ id, label, value, set }: { id: string; label: string; value: boolean; set: (v: boolean) => void }) {
  return (
    <label class="check" for={id}>
      <input id={id} type="checkbox" checked={value} onChange={(e) => set((e.target as HTMLInputElement).checked)} />
      <span>{label}</span>
    </label>
  );
}

export function Segments() {
  const [form, setForm] = useState<Form>(EMPTY);
  const [asked, setAsked] = useState<SegmentQuery | null>(null); // the query of the pages shown
  const [page, setPage] = useState<SegmentPage | null>(null);
  const [count, setCount] = useState<number | null>(null);
  const [pageNumber, setPageNumber] = useState(0);
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  useReady(page ? "segment-page" : "segments", !busy);
  const set = <K extends keyof Form>(key: K) => (value: Form[K]) => setForm((old) => ({ ...old, [key]: value }));

  const ask = async (query: SegmentQuery, cursor: string | null) => {
    setBusy(true);
    setProblem(null);
    try {
      const body: SegmentQuery = { ...query, limit: PAGE, ...(cursor ? { cursor } : { count: true }) };
      const answer = await post<SegmentPage>("/v1/segments/query", body);
      setAsked(query);
      setPage(answer);
      if (!cursor) {
        setCount(answer.count ?? null);
        setPageNumber(1);
      } else setPageNumber((n) => n + 1);
    } catch (e) {
      setProblem((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  const submit = (e: Event) => {
    e.preventDefault();
    void ask(queryOf(form), null);
  };

  return (
    <article aria-labelledby="segments-title">
      <h1 id="segments-title">Segments</h1>
      <form class="card segment-form" onSubmit={submit} aria-label="Segment conditions">
        <p>Recipients meeting every condition given. Conditions on opens, clicks and scores leave out recipients whose tracking was refused or never allowed.</p>
        <div class="fields">
          <Text id="seg-inactive" label="Inactive for days" type="number" value={form.inactiveDays} set={set("inactiveDays")} hint="no person's open or click in that many days" />
          <div class="field">
            <label for="seg-score">Score at least</label>
            <select id="seg-score" value={form.minScore} onChange={(e) => set("minScore")((e.target as HTMLSelectElement).value)}>
              <option value="">any</option>
              {[1, 2, 3, 4, 5].map((n) => (
                <option key={n} value={String(n)}>
                  {n} ★
                </option>
              ))}
            </select>
          </div>
          <Text id="seg-clicked" label="Clicked in campaign" value={form.clickedCampaign} set={set("clickedCampaign")} />
          <Text id="seg-clicked-link" label="Link number (from 0; empty: any)" type="number" value={form.clickedLink} set={set("clickedLink")} />
          <Text id="seg-opened" label="Opened campaign" value={form.openedCampaign} set={set("openedCampaign")} hint="a pixel open or an implied one (a click, images off)" />
          <Text id="seg-onc" label="Opened but did not click campaign" value={form.openedNotClickedCampaign} set={set("openedNotClickedCampaign")} />
        </div>
        <div class="toolbar">
          <Check id="seg-machine" label="Machine-only opens" value={form.machineOnly} set={set("machineOnly")} />
          <Check id="seg-bounced" label="Bounced" value={form.bounced} set={set("bounced")} />
          <Check id="seg-complained" label="Complained" value={form.complained} set={set("complained")} />
          <Check id="seg-refused" label="Refused tracking" value={form.refusedTracking} set={set("refusedTracking")} />
        </div>
        <div class="toolbar">
          <button type="submit" disabled={busy}>
            Show recipients
          </button>
          <button type="button" class="secondary" disabled={busy} onClick={() => setForm(EMPTY)}>
            Clear
          </button>
        </div>
      </form>
      {problem && (
        <p class="error" role="alert">
          {problem}
        </p>
      )}
      {page && asked && (
        <section aria-labelledby="members-title" class="card">
          <h2 id="members-title">
            <span data-testid="segment-count" data-value={count ?? ""}>
              {fmt.count(count)}
            </span>{" "}
            recipients
          </h2>
          {/* e2-exports: the "Export segment members" button (the segment's conditions, any format). */}
          <SegmentExport query={asked} />
          <DataTable
            rows={page.recipients}
            caption={`Page ${pageNumber} of the segment, by recipient tag`}
            rowKey={(m) => m.recipient_tag}
            empty="No recipient on this page."
            columns={[
              { id: "recipient", header: "Recipient", value: (m) => m.recipient, render: (m) => <a href={href.recipient(m.recipient)} data-testid="segment-member">{m.recipient}</a> },
              { id: "status", header: "Status", value: (m) => m.status, render: (m) => <span title={STATUS_WORDS[m.status]} data-testid={`member-${m.recipient}-status`} data-value={m.status}>{m.status.replace("_", " ")}</span> },
              { id: "score", header: "Score", numeric: true, value: (m) => m.score, render: (m) => <Num value={m.score} testid={`member-${m.recipient}-score`} /> },
              { id: "sends", header: "Sent", numeric: true, value: (m) => m.sends, render: (m) => <Num value={m.sends} testid={`member-${m.recipient}-sends`} /> },
              { id: "opened", header: "Opened", numeric: true, value: (m) => m.opened, render: (m) => <Num value={m.opened} testid={`member-${m.recipient}-opened`} /> },
              { id: "implied_opens", header: "Implied", numeric: true, value: (m) => m.implied_opens, render: (m) => <Num value={m.implied_opens} testid={`member-${m.recipient}-implied_opens`} /> },
              { id: "machine_only", header: "Machine only", numeric: true, value: (m) => m.machine_only, render: (m) => <Num value={m.machine_only} testid={`member-${m.recipient}-machine_only`} /> },
              { id: "clicked", header: "Clicked", numeric: true, value: (m) => m.clicked, render: (m) => <Num value={m.clicked} testid={`member-${m.recipient}-clicked`} /> },
              { id: "last_open", header: "Last open", value: (m) => m.last_open, render: (m) => fmt.time(m.last_open) },
              { id: "last_click", header: "Last click", value: (m) => m.last_click, render: (m) => fmt.time(m.last_click) },
            ]}
          />
          {page.next_cursor && (
            <button type="button" class="secondary" disabled={busy} onClick={() => void ask(asked, page.next_cursor)}>
              Next page
            </button>
          )}
        </section>
      )}
    </article>
  );
}
