/**
 * The API docs in Chromium: /docs (Swagger UI) and /redoc (ReDoc) of a running
 * server ($CONFIDE_BASE_URL) render the OpenAPI document under their
 * Content-Security-Policy, with no console error, no CSP violation and no
 * request to any other origin.
 */
import { collectProblems, launch, script } from "./browser.js";

const base = process.env["CONFIDE_BASE_URL"];
if (base === undefined) throw new Error("CONFIDE_BASE_URL is not set");
const origin = new URL(base).origin;

const pages: { path: string; rendered: string }[] = [
  // An operation of the document, rendered by Swagger UI.
  { path: "/docs", rendered: "#swagger-ui .opblock" },
  // An operation's heading, rendered by ReDoc (after its worker parsed the document).
  { path: "/redoc", rendered: "redoc h2" },
];

script(async () => {
  const browser = await launch();
  try {
    for (const { path, rendered } of pages) {
      const context = await browser.newContext();
      const page = await context.newPage();
      const problems = collectProblems(page, path);
      const elsewhere: string[] = [];
      page.on("request", (request) => {
        const url = new URL(request.url());
        if (!["data:", "blob:"].includes(url.protocol) && url.origin !== origin) {
          elsewhere.push(request.url());
        }
      });
      await page.goto(`${base}${path}`);
      await page.waitForSelector(rendered, { timeout: 30_000 });
      if (elsewhere.length > 0) throw new Error(`${path} asked other hosts:\n${elsewhere.join("\n")}`);
      if (problems.length > 0) throw new Error(`${path}:\n${problems.join("\n")}`);
      console.log(`${path}: rendered`);
      await context.close();
    }
  } finally {
    await browser.close();
  }
  console.log("docs pages: done");
});
