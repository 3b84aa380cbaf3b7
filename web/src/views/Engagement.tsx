// A recipient's engagement (issue 20): their status and 1-5 score, and the numbers behind them, as
// GET /v1/recipients/{r}/engagement answers them. Each number carries `data-testid="engagement-<field>"` and the
// raw value in `data-value`; the browser test compares them with the API's JSON.
import type { Engagement } from "../api";
import * as fmt from "../format";
import { Stat } from "../stat";

export const STATUS_WORDS: Record<Engagement["status"], string> = {
  engaged: "Engaged: a person opened or clicked",
  unengaged: "Unengaged: no person's open or click",
  unknown: "Unknown: only Apple's privacy prefetch opened (it hides real opens)",
  bounced: "Bounced (hard)",
  complained: "Complained (marked as spam)",
  not_tracked: "Not tracked: tracking refused or never allowed, so never scored",
};

export function stars(score: number | null): string {
  return score === null ? "no score" : `${"★".repeat(score)}${"☆".repeat(5 - score)} (${score} of 5)`;
}

function When({ field, label, value }: { field: string; label: string; value: string | null }) {
  return (
    <div class="stat">
      <dt>{label}</dt>
      <dd class="time" data-testid={`engagement-${field}`} data-value={value ?? ""}>
        {fmt.time(value)}
      </dd>
    </div>
  );
}

export function EngagementView({ e }: { e: Engagement }) {
  return (
    <>
      <p>
        <strong data-testid="engagement-status" data-value={e.status}>
          {STATUS_WORDS[e.status]}
        </strong>
        {" · "}
        <span data-testid="engagement-score" data-value={e.score ?? ""} aria-label={e.score === null ? "no score" : `score ${e.score} of 5`}>
          {stars(e.score)}
        </span>
      </p>
      <dl class="stats">
        <Stat prefix="engagement" field="sends" label="Messages sent" value={e.sends} />
        <Stat prefix="engagement" field="delivered" label="Delivered" value={e.delivered} />
        <Stat prefix="engagement" field="opened" label="Opened (pixel, a person)" value={e.opened} />
        <Stat prefix="engagement" field="human_opens" label="Human opens" value={e.human_opens} />
        <Stat prefix="engagement" field="implied_opens" label="Implied opens (clicked, images off)" value={e.implied_opens} />
        <Stat prefix="engagement" field="machine_only" label="Machine-only opens" value={e.machine_only} />
        <Stat prefix="engagement" field="clicked" label="Clicked" value={e.clicked} />
        <Stat prefix="engagement" field="clicks" label="Clicks" value={e.clicks} />
        <Stat prefix="engagement" field="bounces" label="Hard bounces" value={e.bounces} />
        <Stat prefix="engagement" field="complaints" label="Complaints" value={e.complaints} />
        <When field="last_open" label="Last open" value={e.last_open} />
        <When field="last_click" label="Last click" value={e.last_click} />
      </dl>
      <p class="muted">
        Counts are of messages, but human opens and clicks (each one). An implied open is a message a person clicked whose
        pixel never loaded; machine-only opens are messages only machines (prefetch, proxies, scanners) opened. The score's
        formula is in the README (Engagement and segments).
      </p>
    </>
  );
}
