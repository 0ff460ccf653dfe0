// Bundles the web client into app/webclient/static/ (or --outdir DIR): index.html,
// app.js, app.css. Minified, ESM, es2022, no source map and no legal comments, so
// that the same sources always give the same bytes (tests/web/test_web_build.py).
//
// @confide/client resolves to the SDK's TypeScript sources through tsconfig.json
// "paths" (esbuild reads it): a clean clone needs no prior build of the SDK and
// can never bundle a stale dist/. The SDK's own dependencies resolve from
// clients/typescript/node_modules (its `npm ci`).
import { build } from "esbuild";
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({ options: { outdir: { type: "string" } } });
const outdir = resolve(values.outdir ?? join(here, "..", "..", "app", "webclient", "static"));

if (!existsSync(join(here, "..", "typescript", "node_modules"))) {
  console.error("clients/typescript/node_modules is missing: run `npm ci` in clients/typescript first");
  process.exit(1);
}

mkdirSync(outdir, { recursive: true });
const common = {
  bundle: true,
  minify: true,
  target: "es2022",
  legalComments: "none",
  charset: "utf8",
  sourcemap: false,
  logLevel: "warning",
  absWorkingDir: here,
};
await build({
  ...common,
  entryPoints: ["src/main.ts"],
  outfile: join(outdir, "app.js"),
  format: "esm",
  platform: "browser",
  tsconfig: "tsconfig.json",
});
await build({ ...common, entryPoints: ["app.css"], outfile: join(outdir, "app.css") });
copyFileSync(join(here, "index.html"), join(outdir, "index.html"));
