/**
 * The Chromium harness: Debian's /usr/bin/chromium driven by playwright-core
 * (no downloaded browsers), headless, with fake camera and microphone and
 * WebRTC allowed over loopback; screenshots into $CONFIDE_ARTIFACTS.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, type BrowserContext, type Page, chromium } from "playwright-core";

export const CHROMIUM = process.env["CONFIDE_CHROMIUM"] ?? "/usr/bin/chromium";

export const CHROMIUM_ARGS = [
  // Grant camera and microphone without a prompt, and feed them a test pattern and a beep.
  "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream",
  // Two pages on one machine: offer loopback candidates, and real addresses rather than mDNS names.
  "--allow-loopback-in-peer-connection",
  "--disable-features=WebRtcHideLocalIpsWithMdns",
  // Containers: no user namespaces for the sandbox, a small /dev/shm.
  "--no-sandbox",
  "--disable-dev-shm-usage",
  "--autoplay-policy=no-user-gesture-required",
];

export async function launch(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/** A fresh context (its own cookies and storage: another person) allowed camera and microphone at `origin`. */
export async function personContext(browser: Browser, origin: string): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  await context.grantPermissions(["camera", "microphone"], { origin });
  return context;
}

/** Console errors, page errors and CSP violations a page reports, to assert there are none. */
export function collectProblems(page: Page, label: string): string[] {
  const problems: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`${label} console: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`${label} page error: ${error.message}`));
  return problems;
}

/** Controls on the page without an accessible name (text, aria-label, aria-labelledby or a label). */
export async function unlabelled(page: Page): Promise<string[]> {
  return page.evaluate(() =>
    [...document.querySelectorAll<HTMLElement>("button, input, textarea, select, video, a[href]")]
      .filter((el) => {
        const named =
          (el.textContent ?? "").trim() !== "" ||
          (el.getAttribute("aria-label") ?? "").trim() !== "" ||
          el.hasAttribute("aria-labelledby") ||
          ((el as HTMLInputElement).labels?.length ?? 0) > 0;
        return !named;
      })
      .map((el) => el.outerHTML.slice(0, 120)),
  );
}

export class Shots {
  private count = 0;
  readonly dir: string | null;

  constructor(dir: string | undefined = process.env["CONFIDE_ARTIFACTS"]) {
    this.dir = dir === undefined || dir === "" ? null : dir;
    if (this.dir !== null) mkdirSync(this.dir, { recursive: true });
  }

  /** A screenshot, after checking that every control on the page has a name. */
  async take(page: Page, name: string): Promise<void> {
    const missing = await unlabelled(page);
    if (missing.length > 0) throw new Error(`unlabelled controls at "${name}":\n${missing.join("\n")}`);
    if (this.dir === null) return;
    this.count += 1;
    const file = `${String(this.count).padStart(2, "0")}-${name.replace(/[^a-z0-9-]+/gi, "-")}.png`;
    await page.screenshot({ path: join(this.dir, file), fullPage: true });
  }
}

/** Runs `main`, prints what failed and sets the exit code: 0 only when it finished. */
export function script(main: () => Promise<void>): void {
  main().then(
    () => {
      process.exitCode = 0;
    },
    (error: unknown) => {
      console.error(error instanceof Error ? (error.stack ?? error.message) : error);
      process.exitCode = 1;
    },
  );
}
