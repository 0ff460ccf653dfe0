/**
 * A one-to-one video call. Signalling (SDP offer and answer, ICE candidates,
 * hang-up) travels only as JSON bytes through `room.sendTo(deviceId, …)` and the
 * room's `signal` events, so the server relays it without reading it.
 */
import type { Room } from "./contract.js";

export type Signal =
  | { type: "offer"; sdp: string }
  | { type: "answer"; sdp: string }
  | { type: "candidate"; candidate: RTCIceCandidateInit }
  | { type: "hangup" };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeSignal(signal: Signal): Uint8Array {
  return encoder.encode(JSON.stringify(signal));
}

/** The signal in `bytes`, or null when they are not one. */
export function decodeSignal(bytes: Uint8Array): Signal | null {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const v = value as Record<string, unknown>;
  switch (v["type"]) {
    case "offer":
    case "answer":
      return typeof v["sdp"] === "string" ? { type: v["type"], sdp: v["sdp"] } : null;
    case "candidate": {
      const c = v["candidate"];
      if (typeof c !== "object" || c === null || typeof (c as { candidate?: unknown }).candidate !== "string") return null;
      return { type: "candidate", candidate: c as RTCIceCandidateInit };
    }
    case "hangup":
      return { type: "hangup" };
    default:
      return null;
  }
}

export interface CallView {
  /** The RTCPeerConnection's connectionState, or "idle" / "ringing" around it. */
  state(state: string): void;
  incoming(fromDevice: string): void;
  local(stream: MediaStream | null): void;
  remote(stream: MediaStream | null): void;
  problem(text: string): void;
}

export class VideoCall {
  private pc: RTCPeerConnection | null = null;
  private peer: string | null = null;
  private offer: string | null = null;
  private media: MediaStream | null = null;
  private candidates: RTCIceCandidateInit[] = [];

  constructor(
    private readonly room: Room,
    private readonly iceServers: () => Promise<RTCIceServer[]>,
    private readonly view: CallView,
  ) {}

  get active(): boolean {
    return this.pc !== null || this.offer !== null;
  }

  async start(deviceId: string): Promise<void> {
    if (this.active) return;
    this.peer = deviceId;
    const pc = await this.connect();
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await this.signal({ type: "offer", sdp: offer.sdp ?? "" });
  }

  async accept(): Promise<void> {
    if (this.offer === null || this.pc !== null) return;
    const sdp = this.offer;
    this.offer = null;
    const pc = await this.connect();
    await pc.setRemoteDescription({ type: "offer", sdp });
    await this.flushCandidates();
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    await this.signal({ type: "answer", sdp: answer.sdp ?? "" });
  }

  async hangUp(tell = true): Promise<void> {
    if (tell && this.peer !== null && this.active) await this.signal({ type: "hangup" }).catch(() => undefined);
    this.pc?.close();
    this.pc = null;
    this.offer = null;
    this.peer = null;
    this.candidates = [];
    for (const track of this.media?.getTracks() ?? []) track.stop();
    this.media = null;
    this.view.local(null);
    this.view.remote(null);
    this.view.state("idle");
  }

  async receive(fromDevice: string, bytes: Uint8Array): Promise<void> {
    const signal = decodeSignal(bytes);
    if (signal === null) return;
    if (this.peer !== null && fromDevice !== this.peer) return; // one call at a time
    switch (signal.type) {
      case "offer":
        if (this.active) return;
        this.peer = fromDevice;
        this.offer = signal.sdp;
        this.view.state("ringing");
        this.view.incoming(fromDevice);
        return;
      case "answer":
        if (this.pc === null) return;
        await this.pc.setRemoteDescription({ type: "answer", sdp: signal.sdp });
        await this.flushCandidates();
        return;
      case "candidate":
        if (this.pc?.remoteDescription) await this.pc.addIceCandidate(signal.candidate);
        else this.candidates.push(signal.candidate);
        return;
      case "hangup":
        await this.hangUp(false);
        return;
    }
  }

  private async connect(): Promise<RTCPeerConnection> {
    const [iceServers, media] = await Promise.all([
      this.iceServers(),
      navigator.mediaDevices.getUserMedia({ audio: true, video: true }),
    ]);
    this.media = media;
    this.view.local(media);
    const pc = new RTCPeerConnection({ iceServers });
    this.pc = pc;
    for (const track of media.getTracks()) pc.addTrack(track, media);
    pc.addEventListener("icecandidate", (event) => {
      if (event.candidate) void this.signal({ type: "candidate", candidate: event.candidate.toJSON() });
    });
    pc.addEventListener("track", (event) => {
      this.view.remote(event.streams[0] ?? new MediaStream([event.track]));
    });
    pc.addEventListener("connectionstatechange", () => {
      this.view.state(pc.connectionState);
      if (pc.connectionState === "failed") this.view.problem("The call could not connect.");
    });
    this.view.state(pc.connectionState);
    return pc;
  }

  private async flushCandidates(): Promise<void> {
    const queued = this.candidates;
    this.candidates = [];
    for (const candidate of queued) await this.pc?.addIceCandidate(candidate);
  }

  private async signal(signal: Signal): Promise<void> {
    if (this.peer === null) return;
    await this.room.sendTo(this.peer, encodeSignal(signal));
  }
}
