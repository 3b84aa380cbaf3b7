// How numbers and times are written on the page. Pure, and predictable on purpose: a browser test compares
// the page's text with the API's JSON (each number's element also carries the raw value in `data-value`).
//   count: the integer with "," thousands separators (1,234,567)
//   rate:  the API's fraction (4 decimals) as a percentage with 2 decimals (0.6667 -> "66.67%")
//   time:  ISO-8601 in UTC, to the second ("2026-12-03 21:57:52 UTC")
//   seconds: read time to a tenth of a second ("6.2 s")

export function count(n: number | null | undefined): string {
  if (n === null || n === undefined) return "—";
  const digits = String(Math.trunc(Math.abs(n)));
  const grouped = digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return n < 0 ? `-${grouped}` : grouped;
}

export function rate(r: number | null | undefined): string {
  if (r === null || r === undefined) return "—";
  // 4 decimals of a fraction are 2 of a percentage: scale as integers so no float noise shows.
  const basisPoints = Math.round(r * 10000);
  const whole = Math.trunc(basisPoints / 100);
  const cents = String(Math.abs(basisPoints % 100)).padStart(2, "0");
  return `${whole}.${cents}%`;
}

/** Seconds of read time, to a tenth ("6.2 s"); the exact value is in `data-value`. */
export function seconds(s: number | null | undefined): string {
  if (s === null || s === undefined) return "—";
  return `${s.toFixed(1)} s`;
}

export function time(iso: string | null | undefined): string {
  if (!iso) return "—";
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso;
  return `${at.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

export const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"] as const;

export function hour(h: number | null): string {
  return h === null ? "—" : `${String(h).padStart(2, "0")}:00`;
}
