// The dashboard's build: one index.html and hashed assets under dist/assets/ (served by `pixelpipe serve` at /).
// `npm run dev` serves the page on :5173 and passes the API's routes to a running `pixelpipe serve`
// (PIXELPIPE_DEV_API, default http://127.0.0.1:8000), so the session cookie stays same-origin.
import preact from "@preact/preset-vite";
import { defineConfig } from "vite";

const api = process.env.PIXELPIPE_DEV_API ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [preact()],
  base: "/",
  build: {
    outDir: "dist",
    assetsDir: "assets",
    target: "es2022",
    // ECharts is split into its own chunk, loaded while the report's numbers are being fetched.
    chunkSizeWarningLimit: 700,
  },
  server: {
    proxy: {
      "/v1": { target: api, changeOrigin: false },
      "/session": { target: api, changeOrigin: false },
      "/schema": { target: api, changeOrigin: false },
    },
  },
});
