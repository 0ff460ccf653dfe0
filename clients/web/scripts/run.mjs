// Runs one TypeScript file of test/ under Node: bundled by esbuild (packages stay
// external) into a hidden .mjs beside it, so that packages and import.meta.dirname
// resolve as from the source, imported, then removed.
import { build } from "esbuild";
import { rmSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const entry = process.argv[2];
if (!entry) {
  console.error("usage: node scripts/run.mjs test/<file>.ts");
  process.exit(2);
}
const source = resolve(here, entry);
const outfile = join(dirname(source), `.${basename(source, ".ts")}.${process.pid}.mjs`);
try {
  await build({
    entryPoints: [source],
    outfile,
    bundle: true,
    packages: "external",
    platform: "node",
    format: "esm",
    target: "node20",
    absWorkingDir: here,
    logLevel: "warning",
  });
  await import(pathToFileURL(outfile).href);
} finally {
  rmSync(outfile, { force: true });
}
