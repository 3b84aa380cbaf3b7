// Best time to send: the modal weekday and hour, and when the audience opens as a weekday x hour heatmap
// (`by_weekday_hour`; each reader's own local time).
import { useMemo } from "preact/hooks";
import type { BestTime } from "../api";
import { Chart } from "../charts";
import * as fmt from "../format";

const BASIS: Record<string, string> = {
  recipient: "this recipient's own opens, in their time zone",
  campaign: "this campaign's opens, each in its reader's time zone",
  campaigns: "the opens of the campaigns this recipient was sent (too few of their own)",
  account: "all the account's opens (too few for this campaign alone)",
  none: "not enough opens yet (at least 5 are needed)",
};

export function BestTimeView({ best, prefix = "best_time" }: { best: BestTime; prefix?: string }) {
  const grid = best.by_weekday_hour;
  const option = useMemo(() => {
    const cells: [number, number, number][] = [];
    let max = 0;
    fmt.WEEKDAYS.forEach((day, y) => {
      const hours = grid?.[day] ?? [];
      hours.forEach((n, x) => {
        cells.push([x, y, n]);
        max = Math.max(max, n);
      });
    });
    return {
      tooltip: { position: "top" },
      grid: { left: 45, right: 10, top: 10, bottom: 90 },
      xAxis: { type: "category", data: Array.from({ length: 24 }, (_, h) => String(h).padStart(2, "0")), splitArea: { show: true } },
      yAxis: { type: "category", data: [...fmt.WEEKDAYS], inverse: true, splitArea: { show: true } },
      visualMap: {
        min: 0,
        max: Math.max(1, max),
        calculable: true,
        orient: "horizontal",
        left: "center",
        bottom: 0,
        inRange: { color: ["#f1f5f9", "#1f5fbf"] },
      },
      series: [{ type: "heatmap", name: "Opens", data: cells, emphasis: { itemStyle: { borderColor: "#111", borderWidth: 1 } } }],
    };
  }, [grid]);
  return (
    <>
      <p>
        Best: <strong data-testid={`${prefix}-weekday`}>{best.weekday ?? "—"}</strong> at{" "}
        <strong data-testid={`${prefix}-hour`} data-value={best.hour ?? ""}>
          {fmt.hour(best.hour)}
        </strong>
        {best.timezone ? ` (${best.timezone})` : " (reader's local time)"} · from{" "}
        <span data-testid={`${prefix}-sample_size`} data-value={best.sample_size}>
          {fmt.count(best.sample_size)}
        </span>{" "}
        opens: {BASIS[best.basis] ?? best.basis}.
      </p>
      {grid && best.sample_size > 0 && <Chart option={option} height={260} label={`Opens by weekday and hour; most at ${best.weekday} ${fmt.hour(best.hour)}`} />}
    </>
  );
}
