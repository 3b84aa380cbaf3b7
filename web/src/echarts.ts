// Apache ECharts, tree-shaken to what the dashboard draws: funnel, line and bar time series, ranked bars,
// the weekday x hour heatmap. Imported only through `loadEcharts` (charts.tsx), so it is its own chunk.
import { BarChart, FunnelChart, HeatmapChart, LineChart } from "echarts/charts";
import {
  AriaComponent,
  GridComponent,
  LegendComponent,
  TooltipComponent,
  VisualMapComponent,
} from "echarts/components";
import * as echarts from "echarts/core";
import { CanvasRenderer } from "echarts/renderers";

echarts.use([
  BarChart,
  FunnelChart,
  HeatmapChart,
  LineChart,
  AriaComponent,
  GridComponent,
  LegendComponent,
  TooltipComponent,
  VisualMapComponent,
  CanvasRenderer,
]);

export { echarts };
