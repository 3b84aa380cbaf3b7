// The page's only door to the server: same-origin fetches that carry the session cookie (never the API key),
// and the CSRF token on every state-changing request. The token lives in memory only (no Web Storage).

export interface Session {
  account: string;
  csrf_token: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

let csrfToken: string | null = null;
let onSignedOut: () => void = () => {};

/** Called when any answer says the session is gone (401), so the page goes back to the sign-in view. */
export function whenSignedOut(callback: () => void): void {
  onSignedOut = callback;
}

async function errorOf(response: Response): Promise<ApiError> {
  let detail = response.statusText;
  try {
    const body = (await response.json()) as { detail?: string; error?: string };
    detail = body.detail ?? body.error ?? detail;
  } catch {
    // not JSON: the status text says enough
  }
  return new ApiError(response.status, detail);
}

async function request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    signal,
  });
  if (response.status === 401 && path !== "/session") {
    csrfToken = null;
    onSignedOut();
  }
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

export const get = <T>(path: string, signal?: AbortSignal): Promise<T> => request<T>("GET", path, undefined, signal);
export const put = <T>(path: string, body?: unknown): Promise<T> => request<T>("PUT", path, body ?? {});
export const del = <T>(path: string): Promise<T> => request<T>("DELETE", path);
export const post = <T>(path: string, body: unknown): Promise<T> => request<T>("POST", path, body);

/** The current session, or null when there is none (401). */
export async function currentSession(): Promise<Session | null> {
  try {
    const session = await request<Session>("GET", "/session");
    csrfToken = session.csrf_token;
    return session;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return null;
    throw error;
  }
}

/** Trade the key for a session cookie; the key is not kept anywhere once this returns. */
export async function signIn(apiKey: string): Promise<Session | null> {
  await request<Session>("POST", "/session", { api_key: apiKey });
  return currentSession();
}

export async function signOut(): Promise<void> {
  try {
    await request<void>("DELETE", "/session");
  } finally {
    csrfToken = null;
  }
}

export const enc = encodeURIComponent;

// The API's JSON shapes (see /schema/openapi.json); only what the views read.

export interface CampaignItem {
  campaign_id: string;
  sent: number;
  delivered?: number | null; // issue 16: null without delivery data
  bounced?: number | null;
  delivery_rate?: number | null;
  first_sent_at: string | null;
  last_sent_at: string | null;
  opens: number;
  clicks: number;
  unique_opens: number;
  open_rate: number; // over delivered mail where the campaign has delivery data, as its summary says
  unique_clicks: number;
  click_rate: number;
  opens_by_day: { day: string; opens: number }[];
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface Summary {
  campaign_id: string;
  include_machine: boolean;
  sent: number;
  opens: number;
  unique_opens: number;
  machine_opens: number;
  unique_machine_opens: number;
  open_rate: number;
  clicks: number;
  unique_clicks: number;
  bot_clicks: number;
  bot_opens: number;
  click_rate: number;
  filtered: Record<string, number>;
  // Issue 16's delivery numbers: null while the campaign has no delivery data (`delivery_data` false).
  delivery_data?: boolean;
  delivered?: number | null;
  deferred?: number | null;
  dropped?: number | null;
  unsubscribes?: number | null;
  bounces?: { hard: number; soft: number } | null;
  delivered_inferred?: number | null;
  bounced?: number | null;
  complaints?: number | null;
  delivery_rate?: number | null;
  bounce_rate?: number | null;
  complaint_rate?: number | null;
  rate_basis?: string | null;
  read_time?: ReadTime | null; // issue 18: how long timed opens stayed on screen
  // Issue 20: unique_opens = unique_pixel_opens + implied_opens (a person's click, the pixel never loaded);
  // the open rate without the messages whose only opens are Apple's privacy prefetch.
  unique_pixel_opens?: number;
  implied_opens?: number;
  mpp_only_messages?: number;
  mpp_adjusted_open_rate?: number;
}

/** Read time (issue 18): timed opens by how long they stayed on screen; all zeros without timed opens. */
export interface ReadTime {
  read: number; // 8 s or more
  skimmed: number; // 2 to 8 s
  glanced: number; // under 2 s
  unknown: number; // not measurable (image proxies, prefetch, bots, the edge at its cap)
  measured: number; // read + skimmed + glanced
  median_seconds: number | null; // of the measured; null when none
}

export interface SeriesPoint {
  t: string;
  opens: number;
  unique_opens: number;
  clicks: number;
  machine_opens: number;
}

export interface TimeSeries {
  bucket: string;
  tz: string;
  from: string | null;
  to: string | null;
  include_machine: boolean;
  series: SeriesPoint[];
}

export interface BreakdownRow {
  key: string | null;
  opens: number;
  unique_opens: number;
  clicks: number;
  unique_clicks: number;
  read_time?: ReadTime | null; // issue 18, on the breakdown by client
}

export interface Breakdown {
  by: string;
  rows: BreakdownRow[];
}

export interface LinkRow {
  link_index: number;
  url: string;
  clicks: number;
  unique_clicks: number;
  bot_clicks: number;
}

export interface FilteredRow {
  kind: string;
  verdict: string;
  reason: string;
  hits: number;
}

export interface Filtered {
  filtered: FilteredRow[];
  filtered_total: number;
  machine_opens_by_reason: Record<string, number>;
  machine_opens: number;
}

export interface BestTime {
  basis: string;
  hour: number | null;
  weekday: string | null;
  timezone: string | null;
  sample_size: number;
  by_hour: number[];
  by_weekday: Record<string, number>;
  by_weekday_hour?: Record<string, number[]>;
}

export interface MessageStats {
  message_id: string;
  campaign_id: string;
  recipient: string;
  sent_at: string | null;
  links?: string[];
  opens: number;
  machine_opens: number;
  first_open_at: string | null;
  last_open_at: string | null;
  clicks: number;
  first_click_at?: string | null;
  opened?: boolean; // a person's open, or implied by a person's click (open_implied: the pixel never loaded)
  open_implied?: boolean;
  bot_clicks: number;
  bot_opens?: number;
  filtered?: Record<string, number>;
  [key: string]: unknown;
}

export interface TimelineItem {
  at: string;
  kind: string;
  verdict?: string | null;
  reason?: string | null;
  client?: string | null;
  device?: string | null;
  os?: string | null;
  country?: string | null;
  city?: string | null;
  via_proxy?: boolean | null;
  link_index?: number | null;
  url?: string | null;
  read_seconds?: number | null; // issue 18: an open's read time (null: not timed, or nothing measured)
  read_category?: string | null; // read, skimmed, glanced, unknown; null when the open was not timed
  [key: string]: unknown;
}

export interface RecipientMessage {
  message_id: string;
  campaign_id: string;
  sent_at: string | null;
  opens: number;
  clicks: number;
  first_open_at: string | null;
}

export interface OpenRecord {
  at: string;
  message_id: string;
  client: string | null;
  device: string | null;
  os: string | null;
  country: string | null;
  city: string | null;
  time_zone: string | null;
}

export interface DeliveryEvent {
  at: string;
  kind: "delivery";
  event: string;
  bounce_type: string | null;
  provider: string;
  provider_type: string | null;
  smtp_status: string | null;
  smtp_code: number | null;
  diagnostic: string | null;
}

export interface Recipient {
  recipient: string;
  last_delivery?: DeliveryEvent | null;
  hard_bounced?: boolean;
  complained?: boolean;
  delivery_events?: Record<string, number>;
  messages: RecipientMessage[];
  more_messages: boolean;
  opens: number;
  open_history: OpenRecord[];
  best_time_to_send: BestTime;
  tracking?: "on" | "off"; // off: on do-not-track
}

/** GET /v1/recipients/{r}/engagement (issue 20): counts of messages, but human_opens and clicks (hits). */
export interface Engagement {
  recipient: string;
  sends: number;
  delivered: number;
  opened: number; // messages a person's pixel open reached
  human_opens: number;
  implied_opens: number; // messages a person clicked whose pixel never loaded
  clicked: number;
  clicks: number;
  machine_only: number;
  mpp_only: number;
  bounces: number;
  complaints: number;
  tracked: number;
  engaged: number;
  not_tracked: boolean;
  status: "engaged" | "unengaged" | "unknown" | "bounced" | "complained" | "not_tracked";
  score: number | null;
  last_open: string | null;
  last_click: string | null;
  last_sent: string | null;
}

/** POST /v1/segments/query's body: conditions, all of which hold. */
export interface SegmentQuery {
  inactive_days?: number;
  min_score?: number;
  clicked?: { campaign: string; link_index?: number };
  opened?: { campaign: string };
  opened_not_clicked?: { campaign: string };
  machine_only?: boolean;
  bounced?: boolean;
  complained?: boolean;
  refused_tracking?: boolean;
  limit?: number;
  cursor?: string;
  count?: boolean;
}

export interface SegmentMember extends Omit<Engagement, "recipient"> {
  recipient: string;
  recipient_tag: string;
}

export interface SegmentPage {
  recipients: SegmentMember[];
  next_cursor: string | null;
  count?: number;
}

/** GET /v1/campaigns/{id}/report: every part of the report, each as its own route answers it. */
export interface Report {
  campaign_id: string;
  summary: Summary;
  timeseries: TimeSeries;
  breakdowns: Record<"client" | "device" | "os" | "country", Breakdown>;
  links: LinkRow[];
  filtered: Filtered;
  best_time_to_send: BestTime;
}

/** A live notice's `data` (an open, a click, or a delivery event). */
export interface Notice {
  id: string;
  type: string;
  campaign_id: string;
  message_id: string;
  recipient: string | null;
  first?: boolean;
  at: string;
  client?: string | null;
  device?: string | null;
  os?: string | null;
  country?: string | null;
  url?: string | null;
  read_seconds?: number | null; // a `read` notice's (issue 18)
  read_category?: string | null;
  read_of?: string;
  [key: string]: unknown;
}

// Exports (issue 20): POST /v1/exports answers a job; GET /v1/exports/{id} its progress.
export type ExportKind = "events" | "filtered_hits" | "deliveries" | "segment";
export type ExportFormat = "csv" | "jsonl" | "parquet";

export interface ExportJob {
  id: string;
  kind: ExportKind;
  format: ExportFormat;
  campaign_id: string | null;
  status: "queued" | "running" | "done" | "failed";
  rows_written: number;
  rows_total: number | null;
  progress: number | null;
  bytes: number;
  error: string | null;
  download_url: string | null;
}
