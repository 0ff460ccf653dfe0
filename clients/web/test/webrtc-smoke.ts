/**
 * Proves the harness: Chromium starts from /usr/bin/chromium; the built client
 * loads from a local static server that sends the server's Content Security
 * Policy, without errors or CSP violations; and two pages in two contexts
 * connect a WebRTC call over loopback with the fake camera (both peers
 * "connected", video frames arriving on each side).
 */
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize, resolve } from "node:path";
import type { Page } from "playwright-core";
import { Shots, collectProblems, launch, personContext, script } from "./browser.js";

const STATIC = resolve(process.env["CONFIDE_WEB_STATIC"] ?? join(import.meta.dirname, "..", "..", "..", "app", "webclient", "static"));
const TYPES: Record<string, string> = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css" };

function csp(host: string): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob: mediastream:",
    `connect-src 'self' ws://${host}`,
  ].join("; ");
}

function serve(): Promise<{ origin: string; close(): void }> {
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://localhost");
    const name = url.pathname === "/" ? "index.html" : normalize(url.pathname).replace(/^\/+/, "");
    const type = TYPES[extname(name)];
    if (name.includes("..") || type === undefined) {
      response.writeHead(404).end();
      return;
    }
    try {
      const body = readFileSync(join(STATIC, name));
      response.writeHead(200, { "content-type": type, "content-security-policy": csp(request.headers.host ?? "") });
      response.end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  return new Promise((done) => {
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      done({ origin: `http://127.0.0.1:${port}`, close: () => server.close() });
    });
  });
}

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
  const site = await serve();
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
