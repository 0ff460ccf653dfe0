// Parse AsyncAPI documents with the official parser (@asyncapi/parser, which
// also applies its Spectral rule set) and fail on any diagnostic of severity
// error. Usage: node validate.mjs FILE...  (YAML or JSON)
import { readFile } from "node:fs/promises";
import { DiagnosticSeverity, Parser } from "@asyncapi/parser";

const SEVERITY = ["error", "warning", "info", "hint"];

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate.mjs FILE...");
  process.exit(2);
}
const parser = new Parser();
let failed = false;
for (const file of files) {
  const { document, diagnostics } = await parser.parse(await readFile(file, "utf8"), {
    source: file,
  });
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  for (const d of diagnostics) {
    const where = d.path.length ? d.path.join(".") : "(document)";
    console.log(`${file}: ${SEVERITY[d.severity] ?? d.severity} ${d.code} at ${where}: ${d.message}`);
  }
  if (document === undefined || errors.length > 0) {
    failed = true;
    console.error(`${file}: not a valid AsyncAPI document (${errors.length} errors)`);
  } else {
    console.log(`${file}: valid AsyncAPI ${document.version()}`);
  }
}
process.exit(failed ? 1 : 0);
