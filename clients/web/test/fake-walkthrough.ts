/**
 * The screens, clicked through in Chromium by role and label while the page runs
 * on the in-memory FakeClient (src/fake.ts): log in with the keyboard, accept
 * the consents and the invitation, wait, get admitted, chat, mark verified,
 * start and hang up a call, reload back into the room. Goes with the fake.
 */
import type { Page } from "playwright-core";
import { Shots, collectProblems, launch, personContext, script } from "./browser.js";
import { serveStatic } from "./static.js";

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`walkthrough: ${what}`);
}

async function focusIsVisible(page: Page): Promise<boolean> {
  return page.evaluate(() => {
    const active = document.activeElement;
    return active instanceof HTMLElement && active.matches(":focus-visible") && getComputedStyle(active).outlineStyle !== "none";
  });
}

script(async () => {
  const site = await serveStatic();
  const browser = await launch();
  const shots = new Shots();
  try {
    const page = await (await personContext(browser, site.origin)).newPage();
    const problems = collectProblems(page, "page");
    await page.goto(`${site.origin}/`);
    check((await page.locator('[data-mode="confide-fake-client"]').count()) === 1, "the fake's banner shows");

    await page.getByLabel("Email").focus();
    await page.keyboard.type("client@example.org");
    await page.keyboard.press("Tab");
    await page.keyboard.type("a passphrase long enough");
    await page.keyboard.press("Tab");
    check(await focusIsVisible(page), "the focused Log in button shows its focus");
    await shots.take(page, "login");
    await page.keyboard.press("Enter");

    await page.getByRole("heading", { name: "Your sessions" }).waitFor();
    await shots.take(page, "consents");
    await page.getByRole("button", { name: "Accept Informed consent" }).click();
    await page.getByRole("button", { name: "Accept Online sessions" }).click();
    await page.getByRole("heading", { name: "Please read and accept" }).waitFor({ state: "detached" });
    await page.getByRole("button", { name: "Accept invitation to First session" }).click();
    await page.getByRole("button", { name: "Enter First session" }).click();

    await page.getByRole("heading", { name: "First session" }).waitFor();
    await page.getByRole("main").getByText("Waiting for the counselor").waitFor();
    await shots.take(page, "waiting");
    const send = page.getByRole("button", { name: "Send" });
    await page.waitForFunction(() => document.querySelector('[data-room-state="admitted"]') !== null);
    check(await send.isEnabled(), "Send is enabled once admitted");
    check(await page.getByRole("main").getByText("Waiting for the counselor").isHidden(), "the waiting notice goes");

    const messages = page.getByRole("list", { name: "Messages" });
    check((await messages.getAttribute("aria-live")) === "polite", "new messages are announced");
    await page.getByRole("textbox", { name: "Message" }).fill("hello there");
    await page.getByRole("textbox", { name: "Message" }).press("Enter");
    await messages.getByText("You: hello there").waitFor();
    await messages.getByText("Dr. Rivera: I hear you: hello there").waitFor();

    const digits = await page.getByTestId("safety-number").first().textContent();
    check(/^([0-9]{5} ){11}[0-9]{5}$/.test(digits ?? ""), `the safety number shows in 12 groups of 5: ${digits}`);
    await page.getByRole("button", { name: "Mark Dr. Rivera verified" }).click();
    await page.getByTestId("verified-fake-counselor").waitFor();
    await shots.take(page, "chat-verified");

    await page.getByRole("button", { name: "Start video call" }).click();
    await page.waitForFunction(() => (document.querySelector<HTMLVideoElement>('[data-testid="local-video"]')?.videoWidth ?? 0) > 0);
    const state = await page.getByTestId("call").getAttribute("data-peer-state");
    check(state !== "idle", `the call section shows the peer connection's state (${state})`);
    await shots.take(page, "calling");
    await page.getByRole("button", { name: "Hang up" }).click();
    check((await page.getByTestId("call").getAttribute("data-peer-state")) === "idle", "hanging up ends the call");

    await page.reload();
    await page.getByRole("heading", { name: "Session" }).waitFor();
    await page.getByRole("list", { name: "Messages" }).waitFor({ state: "attached" });
    check((await page.evaluate(() => sessionStorage.getItem("confide.openRoom"))) === "fake-room", "the open room is remembered");
    await shots.take(page, "restored");
    await page.getByRole("button", { name: "Leave room" }).click();
    await page.getByRole("heading", { name: "Your sessions" }).waitFor();

    check(problems.length === 0, `the page reported problems:\n${problems.join("\n")}`);
    console.log("fake walkthrough: every screen worked");
  } finally {
    await browser.close();
    site.close();
  }
});
