// Copies the API docs' browser bundles from their pinned npm packages (package-lock.json) into the build, so
// `/schema` loads them from the process itself (no CDN): dist/docs-assets/, served at /docs-assets/ (not under
// /assets/, whose hashed files are cached for a year: these names stay the same across versions).
//   swagger-ui/swagger-ui-bundle.js, swagger-ui/swagger-ui-standalone-preset.js, swagger-ui/swagger-ui.css
//   scalar/standalone.js (@scalar/api-reference's browser bundle)
//   redoc/redoc.standalone.js
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "dist", "docs-assets");

const files = {
  "swagger-ui": ["swagger-ui-dist/swagger-ui-bundle.js", "swagger-ui-dist/swagger-ui-standalone-preset.js",
    "swagger-ui-dist/swagger-ui.css"],
  scalar: ["@scalar/api-reference/dist/browser/standalone.js"],
  redoc: ["redoc/bundles/redoc.standalone.js"],
};

for (const [dir, sources] of Object.entries(files)) {
  mkdirSync(join(out, dir), { recursive: true });
  for (const source of sources) {
    const path = join(root, "node_modules", source); // a package's "exports" may hide its bundles
    copyFileSync(path, join(out, dir, source.split("/").pop()));
  }
}
console.log(`API docs assets copied to ${out}`);
