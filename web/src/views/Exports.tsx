// Export buttons (issue 20): ask the API for an export of a campaign's events, delivery events or filtered
// hits in a chosen format, show the job's progress as the API gives it (rows written of rows counted), then a
// link to the file. The page computes nothing: every number is the job's own.
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, get, post, type ExportFormat, type ExportJob, type ExportKind, type SegmentQuery } from "../api";
import * as fmt from "../format";

const POLL_MS = 500;
const FORMATS: { value: ExportFormat; label: string }[] = [
  { value: "csv", label: "CSV" },
  { value: "jsonl", label: "JSON lines" },
  { value: "parquet", label: "Parquet" },
];
const KINDS: { kind: ExportKind; label: string }[] = [
  { kind: "events", label: "Export events" },
  { kind: "deliveries", label: "Export delivery events" },
  { kind: "filtered_hits", label: "Export filtered hits" },
];

/** One job's line: its progress while it runs, its link once done, its error if it failed. */
export function ExportProgress({ job }: { job: ExportJob }) {
  const name = `${job.kind}.${job.format}`;
  return (
    <li data-testid={`export-${job.kind}`} data-status={job.status} data-rows={job.rows_written}>
      <span>{name}: </span>
      {job.status === "done" && job.download_url ? (
        <a href={job.download_url} download>
          Download {name} ({fmt.count(job.rows_written)} rows, {fmt.count(job.bytes)} bytes)
        </a>
      ) : job.status === "failed" ? (
        <span class="error" role="alert">failed: {job.error}</span>
      ) : (
        <>
          <progress max={1} value={job.progress ?? undefined} aria-label={`${name} progress`} />{" "}
          <span role="status">
            {job.status}: {fmt.count(job.rows_written)} of {fmt.count(job.rows_total)} rows
          </span>
        </>
      )}
    </li>
  );
}

/** Follow a job until it is done or failed (GET /v1/exports/{id} every POLL_MS). */
function useJobs(): [ExportJob[], (job: ExportJob) => void, string | null, (e: string | null) => void] {
  const [jobs, setJobs] = useState<ExportJob[]>([]);
  const [error, setError] = useState<string | null>(null);
  const timer = useRef<number | null>(null);
  useEffect(() => {
    const open = jobs.filter((j) => j.status === "queued" || j.status === "running");
    if (open.length === 0) return;
    timer.current = window.setTimeout(async () => {
      try {
        const fresh = await Promise.all(open.map((j) => get<ExportJob>(`/v1/exports/${j.id}`)));
        setJobs((old) => old.map((j) => fresh.find((f) => f.id === j.id) ?? j));
      } catch (e) {
        setError(e instanceof ApiError ? e.message : String(e));
      }
    }, POLL_MS);
    return () => void (timer.current !== null && clearTimeout(timer.current));
  }, [jobs]);
  const add = (job: ExportJob) => setJobs((old) => [job, ...old.filter((j) => j.kind !== job.kind || j.format !== job.format)]);
  return [jobs, add, error, setError];
}

/** Ask for exports (POST /v1/exports with ``body`` and the chosen format) and follow them. */
function useExports(body: (kind: ExportKind) => Record<string, unknown>) {
  const [format, setFormat] = useState<ExportFormat>("csv");
  const [jobs, add, error, setError] = useJobs();
  const ask = async (kind: ExportKind) => {
    setError(null);
    try {
      add(await post<ExportJob>("/v1/exports", { ...body(kind), kind, format }));
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
    }
  };
  const formatChoice = (id: string) => (
    <>
      <label for={id}>Format</label>
      <select id={id} value={format} onChange={(e) => setFormat((e.target as HTMLSelectElement).value as ExportFormat)}>
        {FORMATS.map((f) => (
          <option key={f.value} value={f.value}>
            {f.label}
          </option>
        ))}
      </select>
    </>
  );
  const shown = (
    <>
      {error && <p class="error" role="alert">{error}</p>}
      <ul class="exports">
        {jobs.map((job) => (
          <ExportProgress key={job.id} job={job} />
        ))}
      </ul>
    </>
  );
  return { ask, formatChoice, shown };
}

/** The campaign report's export card. */
export function ExportCard({ campaign }: { campaign: string }) {
  const { ask, formatChoice, shown } = useExports(() => ({ campaign_id: campaign }));
  return (
    <section aria-labelledby="exports-title" class="card">
      <h2 id="exports-title">Exports</h2>
      <div class="toolbar">
        {formatChoice("export-format")}
        {KINDS.map((k) => (
          <button key={k.kind} type="button" class="secondary" onClick={() => ask(k.kind)}>
            {k.label}
          </button>
        ))}
      </div>
      {shown}
    </section>
  );
}

/** The Segments page's export of the segment shown (its conditions, without the page's fields). */
export function SegmentExport({ query }: { query: SegmentQuery }) {
  const { limit: _limit, cursor: _cursor, count: _count, ...conditions } = query;
  const { ask, formatChoice, shown } = useExports(() => ({ segment: conditions }));
  return (
    <div id="segment-members-export" data-slot="segment-members-export" data-query={JSON.stringify(query)}>
      <div class="toolbar">
        {formatChoice("segment-export-format")}
        <button type="button" class="secondary" onClick={() => ask("segment")}>
          Export segment members
        </button>
      </div>
      {shown}
    </div>
  );
}
