// One chart component over ECharts. The library is fetched on first use (a separate chunk, started as soon as
// a view that draws charts is opened, in parallel with that view's data), so the sign-in page and the first
// numbers do not wait for it. Every chart has a text label for screen readers; its numbers are also in a table
// or a stat on the page.
import type { EChartsCoreOption } from "echarts/core";
import { useEffect, useRef } from "preact/hooks";

type Echarts = typeof import("./echarts");
let loading: Promise<Echarts> | null = null;

export function loadEcharts(): Promise<Echarts> {
  loading ??= import("./echarts");
  return loading;
}

type WorldMap = typeof import("./worldmap");
let mapLoading: Promise<WorldMap> | null = null;

let mapLoaded: WorldMap | null = null;

/** The world map's atlas (its own chunk; registers the "world" map with ECharts). */
export function loadWorldMap(): Promise<WorldMap> {
  mapLoading ??= import("./worldmap").then((map) => (mapLoaded = map));
  return mapLoading;
}

/** The atlas if its chunk has loaded, else null. */
export const loadedWorldMap = (): WorldMap | null => mapLoaded;

export const PALETTE = ["#1f5fbf", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207"];

interface Props {
  option: EChartsCoreOption;
  label: string;
  height?: number;
  className?: string;
}

function draw(instance: { setOption: (o: EChartsCoreOption, notMerge?: boolean) => void }, option: EChartsCoreOption): void {
  try {
    instance.setOption({ aria: { enabled: true }, color: PALETTE, animation: false, ...option }, true);
  } catch (error) {
    // A chart that cannot be laid out (its box gone mid-navigation) stays blank; its numbers are in the page.
    console.warn("chart not drawn:", error);
  }
}

export function Chart({ option, label, height = 260, className }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const chart = useRef<{ setOption: (o: EChartsCoreOption, notMerge?: boolean) => void; dispose: () => void } | null>(null);
  const latest = useRef(option);
  latest.current = option;

  useEffect(() => {
    let disposed = false;
    let observer: ResizeObserver | null = null;
    void loadEcharts().then(({ echarts }) => {
      if (disposed || !box.current) return;
      const instance = echarts.init(box.current, null, { renderer: "canvas" });
      draw(instance, latest.current);
      chart.current = instance;
      // A resize already queued when the view goes away must not reach the disposed chart. The observer's
      // first call (made for every observed box) finds the size `init` drew at: laid out again only when the
      // box has really changed, so each chart is drawn once, not twice, on the way to the first paint.
      let drawn = `${box.current.clientWidth}x${box.current.clientHeight}`;
      observer = new ResizeObserver(() => {
        const dom = instance.getDom();
        if (instance.isDisposed() || !dom?.isConnected) return;
        const size = `${dom.clientWidth}x${dom.clientHeight}`;
        if (size === drawn) return;
        drawn = size;
        instance.resize();
      });
      observer.observe(box.current);
    });
    return () => {
      disposed = true;
      observer?.disconnect();
      chart.current?.dispose();
      chart.current = null;
    };
  }, []);

  useEffect(() => {
    if (chart.current) draw(chart.current, option);
  }, [option]);

  return <div ref={box} class={className ?? "chart"} style={{ height: `${height}px` }} role="img" aria-label={label} />;
}
