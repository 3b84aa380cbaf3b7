// The world map of the country breakdown: Natural Earth's 1:110m countries (world-atlas, TopoJSON, ~100 kB)
// registered with ECharts' map series. Its own chunk, fetched alongside the charts library by a report.
// The API names countries by ISO 3166-1 alpha-2 (GeoIP); the atlas by ISO numeric: i18n-iso-countries maps them.
import { MapChart } from "echarts/charts";
import { GeoComponent } from "echarts/components";
import type { FeatureCollection } from "geojson";
import { alpha2ToNumeric } from "i18n-iso-countries";
import { feature } from "topojson-client";
import type { GeometryCollection, Topology } from "topojson-specification";
import countries110m from "world-atlas/countries-110m.json";
import { echarts } from "./echarts";

echarts.use([MapChart, GeoComponent]);

const topology = countries110m as unknown as Topology<{ countries: GeometryCollection<{ name: string }> }>;
const world = feature(topology, topology.objects.countries) as unknown as FeatureCollection;
echarts.registerMap("world", world as never);

const nameById = new Map<string, string>();
for (const f of world.features) nameById.set(String(f.id), String((f.properties as { name: string }).name));

/** The atlas's name of a country given by its alpha-2 code, or null when the atlas has no shape for it. */
export function atlasName(alpha2: string): string | null {
  const numeric = alpha2ToNumeric(alpha2);
  return numeric ? (nameById.get(numeric) ?? null) : null;
}
