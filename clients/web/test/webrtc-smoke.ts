/**
 * Proves the harness: Chromium starts from /usr/bin/chromium; the built client
 * loads from a local static server that sends the server's Content Security
 * Policy, without errors or CSP violations; and two pages in two contexts
 * connect a WebRTC call over loopback with the fake camera (both peers
 * "connected", video frames arriving on each side).
 */
import type { Page } from "playwright-core";
import { Shots, collectProblems, launch, personContext, script } from "./browser.js";
import { serveStatic } from "./static.js";

/** In the page: camera on, a peer connection with all candidates gathered; the description as JSON. */
async function prepare(page: Page, offer: string | null): Promise<string> {
  return page.evaluate(async (remote) => {
    const w = window as unknown as { pc?: RTCPeerConnection };
    const media = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    const pc = new RTCPeerConnection({ iceServers: [] });
    w.pc = pc;
    for (const track of media.getTracks()) pc.addTrack(track, media);
    const video = document.createElement("video");
    video.dataset["testid"] = "remote-video";
    video.setAttribute("aria-label", "The other page's camera");
    video.muted = true;
    video.autoplay = true;
    document.body.append(video);
    pc.addEventListener("track", (event) => {
      video.srcObject = event.streams[0] ?? null;
    });
    const gathered = new Promise<void>((done) => {
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") done();
      });
    });
    if (remote === null) {
      await pc.setLocalDescription(await pc.createOffer());
    } else {
      await pc.setRemoteDescription(JSON.parse(remote) as RTCSessionDescriptionInit);
      await pc.setLocalDescription(await pc.createAnswer());
    }
    await gathered;
    return JSON.stringify(pc.localDescription);
  }, offer);
}

async function connected(page: Page): Promise<void> {
  await page.waitForFunction(
    () => {
      const w = window as unknown as { pc?: RTCPeerConnection };
      const video = document.querySelector<HTMLVideoElement>('[data-testid="remote-video"]');
      return w.pc?.connectionState === "connected" && video !== null && video.videoWidth > 0;
    },
    undefined,
    { timeout: 20_000 },
  );
}

script(async () => {
  const site = await serveStatic();
  const browser = await launch();
  const shots = new Shots();
  try {
    const pages: Page[] = [];
    const problems: string[] = [];
    for (const label of ["caller", "callee"]) {
      const page = await (await personContext(browser, site.origin)).newPage();
      problems.push(...collectProblems(page, label));
      await page.goto(`${site.origin}/`);
      await page.getByRole("heading", { name: "Log in" }).waitFor({ timeout: 10_000 });
      await page.getByLabel("Email").waitFor();
      pages.push(page);
    }
    const [caller, callee] = pages as [Page, Page];
    await shots.take(caller, "smoke-loaded");
    const offer = await prepare(caller, null);
    const answer = await prepare(callee, offer);
    await caller.evaluate(async (remote) => {
      const w = window as unknown as { pc: RTCPeerConnection };
      await w.pc.setRemoteDescription(JSON.parse(remote) as RTCSessionDescriptionInit);
    }, answer);
    await Promise.all([connected(caller), connected(callee)]);
    await shots.take(callee, "smoke-connected");
    const stray = problems.filter((p) => p !== "");
    if (stray.length > 0) throw new Error(`the pages reported problems:\n${stray.join("\n")}`);
    console.log("webrtc smoke: Chromium launched, the client loaded under the CSP, the loopback call connected");
  } finally {
    await browser.close();
    site.close();
  }
});
