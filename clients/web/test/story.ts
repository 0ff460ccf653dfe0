/**
 * A whole session in Chromium, driven by roles and labels, against a real
 * server at $CONFIDE_BASE_URL (seeded by tests/web/test_browser_story.py):
 * a counselor and a client in two browser contexts. The client accepts the
 * consents and the invitation and waits; the counselor admits; chat both ways;
 * both see the same safety number and mark each other verified; a video call
 * connects; the client's page reloads and still decrypts a new message.
 * Screenshots of both pages at each step go to $CONFIDE_ARTIFACTS.
 */
import type { Page } from "playwright-core";
import { Shots, collectProblems, launch, personContext, script } from "./browser.js";

function env(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") throw new Error(`${name} is not set`);
  return value;
}

const base = env("CONFIDE_BASE_URL");
const title = env("CONFIDE_ROOM_TITLE");
const counselorName = env("CONFIDE_COUNSELOR_NAME");
const clientName = env("CONFIDE_CLIENT_NAME");
const texts = [env("CONFIDE_TEXT_1"), env("CONFIDE_TEXT_2"), env("CONFIDE_TEXT_3")] as const;
const TIMEOUT = 30_000;

async function logIn(page: Page, email: string, password: string): Promise<void> {
  await page.goto(`${base}/app/`);
  await page.getByRole("textbox", { name: "Email" }).fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { name: "Your sessions" }).waitFor();
}

async function admitted(page: Page): Promise<void> {
  await page.locator('[data-room-state="admitted"]').waitFor();
  await page.waitForFunction(() => {
    const send = [...document.querySelectorAll("button")].find((b) => b.textContent === "Send");
    return send !== undefined && !send.disabled;
  });
}

async function say(page: Page, text: string): Promise<void> {
  await page.getByRole("textbox", { name: "Message" }).fill(text);
  await page.getByRole("button", { name: "Send" }).click();
  await page.getByRole("list", { name: "Messages" }).getByText(`You: ${text}`).waitFor();
}

async function hears(page: Page, from: string, text: string): Promise<void> {
  await page.getByRole("list", { name: "Messages" }).getByText(`${from}: ${text}`).waitFor();
}

async function peerState(page: Page, state: string): Promise<void> {
  await page.locator(`[data-testid="call"][data-peer-state="${state}"]`).waitFor();
}

script(async () => {
  const browser = await launch();
  const shots = new Shots();
  const counselor = await (await personContext(browser, base)).newPage();
  const client = await (await personContext(browser, base)).newPage();
  const both = async (name: string) => {
    await shots.take(counselor, `${name}-counselor`);
    await shots.take(client, `${name}-client`);
  };
  const problems = [...collectProblems(counselor, "counselor"), ...collectProblems(client, "client")];
  for (const page of [counselor, client]) page.setDefaultTimeout(TIMEOUT);
  try {
    await logIn(counselor, env("CONFIDE_COUNSELOR_EMAIL"), env("CONFIDE_COUNSELOR_PASSWORD"));
    await logIn(client, env("CONFIDE_CLIENT_EMAIL"), env("CONFIDE_CLIENT_PASSWORD"));
    await both("logged-in");

    // The client reads and accepts each consent document, then the invitation, and waits.
    const consents = client.getByRole("region", { name: "Please read and accept" });
    while ((await consents.count()) > 0) {
      await consents.getByRole("button").first().click();
      await client.waitForTimeout(200);
    }
    await client.getByRole("button", { name: `Accept invitation to ${title}` }).click();
    await client.getByRole("button", { name: `Enter ${title}` }).click();
    await client.getByRole("main").getByText("Waiting for the counselor").waitFor();
    await shots.take(client, "waiting-client");

    // The counselor enters and admits the client.
    await counselor.getByRole("button", { name: `Enter ${title}` }).click();
    await counselor.getByRole("button", { name: `Admit ${clientName}` }).click();
    await Promise.all([admitted(client), admitted(counselor)]);
    await both("admitted");

    // Chat both ways.
    await say(client, texts[0]);
    await hears(counselor, clientName, texts[0]);
    await say(counselor, texts[1]);
    await hears(client, counselorName, texts[1]);
    await both("chat");

    // The same safety number on both sides; each marks the other verified.
    const numbers = await Promise.all([counselor, client].map((p) => p.getByTestId("safety-number").first().textContent()));
    if (!numbers[0] || !/^([0-9]{5} ){11}[0-9]{5}$/.test(numbers[0]) || numbers[0] !== numbers[1]) {
      throw new Error(`the safety numbers differ or are malformed: ${JSON.stringify(numbers)}`);
    }
    await counselor.getByRole("button", { name: `Mark ${clientName} verified` }).click();
    await client.getByRole("button", { name: `Mark ${counselorName} verified` }).click();
    for (const page of [counselor, client]) await page.getByTestId("safety-number").first().locator("xpath=..").getByText("Verified", { exact: true }).waitFor();
    await both("verified");

    // A video call, signalled only through the room.
    await counselor.getByRole("button", { name: "Start video call" }).click();
    await client.getByRole("button", { name: "Accept", exact: true }).click();
    await Promise.all([peerState(counselor, "connected"), peerState(client, "connected")]);
    await client.waitForFunction(() => (document.querySelector<HTMLVideoElement>('[data-testid="remote-video"]')?.videoWidth ?? 0) > 0);
    await both("call-connected");
    await counselor.getByRole("button", { name: "Hang up" }).click();
    await Promise.all([peerState(counselor, "idle"), peerState(client, "idle")]);

    // The client's page reloads, comes back into the room, and still decrypts.
    await client.reload();
    await client.getByRole("heading", { name: title }).waitFor();
    await admitted(client);
    await say(counselor, texts[2]);
    await hears(client, counselorName, texts[2]);
    await both("after-reload");

    if (problems.length > 0) throw new Error(`the pages reported problems:\n${problems.join("\n")}`);
    console.log("story: done");
  } catch (error) {
    await both("failed").catch(() => undefined);
    throw error;
  } finally {
    await browser.close();
  }
});
