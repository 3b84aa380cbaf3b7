// A number from the API, as given: formatted (format.ts) for reading, raw in `data-value`, and found by tests
// through `data-testid="stat-<field>"` (the API's field name).
import * as fmt from "./format";

interface Props {
  field: string;
  label: string;
  value: number | null | undefined;
  kind?: "count" | "rate";
  prefix?: string;
}

export function Stat({ field, label, value, kind = "count", prefix = "stat" }: Props) {
  const text = kind === "rate" ? fmt.rate(value) : fmt.count(value);
  return (
    <div class="stat">
      <dt>{label}</dt>
      <dd data-testid={`${prefix}-${field}`} data-value={value ?? ""}>
        {text}
      </dd>
    </div>
  );
}

export function Num({ value, testid, kind = "count" }: { value: number | null | undefined; testid?: string; kind?: "count" | "rate" }) {
  return (
    <span data-testid={testid} data-value={value ?? ""}>
      {kind === "rate" ? fmt.rate(value) : fmt.count(value)}
    </span>
  );
}
