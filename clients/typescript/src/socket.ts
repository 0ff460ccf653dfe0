/**
 * The room socket (docs/PROTOCOL.md, "The room socket"): one connection of
 * one device to one room, authenticated by a room token in the subprotocol
 * list. It parses server frames, matches `ack`s and `error`s to the sends
 * that caused them, and reports everything else to its owner. Reconnecting
 * (with a new token) is the owner's job: a socket opens once.
 */

/** What the SDK needs of a WebSocket: the browser's, or the `ws` package's in Node. */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type WebSocketFactory = (url: string, protocols: string[]) => WebSocketLike;

/** The global WebSocket (browsers, Node 22+), or an error that says to pass one. */
export function defaultWebSocketFactory(): WebSocketFactory {
  const ctor = (globalThis as { WebSocket?: new (url: string, protocols: string[]) => WebSocketLike }).WebSocket;
  if (ctor === undefined) {
    throw new Error("no global WebSocket here: pass webSocket (for example the `ws` package's) to the client");
  }
  return (url, protocols) => new ctor(url, protocols);
}

export const SUBPROTOCOL = "confide.v1";

export interface WireSender {
  readonly account_id: string;
  readonly device_id: string;
}

export interface WireDevice {
  readonly device_id: string;
  readonly public_key: string;
  readonly signing_key?: string | null;
}

export interface WireParticipant {
  readonly account_id: string;
  readonly display_name: string;
  readonly role: string;
  readonly admitted: boolean;
  readonly online: boolean;
  readonly devices: readonly WireDevice[];
}

export interface WelcomeFrame {
  readonly type: "welcome";
  readonly room: string;
  readonly you: { readonly account_id: string; readonly device_id: string; readonly role: string };
  readonly state: "waiting" | "admitted";
  readonly seq: number;
  readonly participants: readonly WireParticipant[];
}

export interface MessageFrame {
  readonly type: "message";
  readonly seq: number;
  readonly id: string;
  readonly sender: WireSender;
  readonly ciphertext: string;
  readonly sent_at: string;
}

export type ServerFrame =
  | WelcomeFrame
  | MessageFrame
  | { readonly type: "ack"; readonly id: string; readonly seq: number }
  | { readonly type: "replay_truncated"; readonly earliest: number }
  | { readonly type: "resumed"; readonly seq: number }
  | {
      readonly type: "presence";
      readonly event: "online" | "offline" | "waiting" | "admitted" | "removed";
      readonly account_id: string;
      readonly device_id?: string;
    }
  | { readonly type: "device"; readonly event: "added" | "revoked"; readonly account_id: string; readonly device: WireDevice }
  | { readonly type: "room"; readonly event: "locked" | "unlocked" | "ending" | "ended"; readonly ends_at?: string }
  | {
      readonly type: "error";
      readonly code: string;
      readonly detail: string;
      readonly id?: string;
      readonly epoch?: number;
    }
  | { readonly type: "pong" };

/** A send the server refused with an error frame (its `code`, and `epoch` for `stale_epoch`). */
export class SendRefused extends Error {
  constructor(
    readonly code: string,
    detail: string,
    readonly epoch?: number,
  ) {
    super(`${code}: ${detail}`);
    this.name = "SendRefused";
  }
}

/** The socket closed before the send was acked: send it again (same id) on the next socket. */
export class SocketClosed extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
  ) {
    super(`socket closed (${code}${reason ? `: ${reason}` : ""})`);
    this.name = "SocketClosed";
  }
}

const TYPES = new Set([
  "welcome",
  "message",
  "ack",
  "replay_truncated",
  "resumed",
  "presence",
  "device",
  "room",
  "error",
  "pong",
]);

/** A server frame from a text frame, or null for anything that is not one. */
export function parseFrame(data: unknown): ServerFrame | null {
  if (typeof data !== "string") return null;
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  const type = (value as { type?: unknown }).type;
  if (typeof type !== "string" || !TYPES.has(type)) return null;
  return value as ServerFrame;
}

interface Waiting {
  resolve(seq: number): void;
  reject(error: Error): void;
}

export interface RoomSocketOptions {
  readonly url: string;
  readonly token: string;
  readonly webSocket: WebSocketFactory;
  /** Every frame but `welcome`, `ack` and the errors of a pending send. */
  readonly onFrame: (frame: ServerFrame) => void;
  readonly onClose: (code: number, reason: string) => void;
}

let counter = 0;

/** A client message id: unique per device, 1–64 characters. */
export function newMessageId(): string {
  counter = (counter + 1) % 1_000_000;
  const random = new Uint8Array(9);
  globalThis.crypto.getRandomValues(random);
  const hex = Array.from(random, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${Date.now().toString(36)}-${counter.toString(36)}-${hex}`;
}

export class RoomSocket {
  private readonly ws: WebSocketLike;
  private readonly waiting = new Map<string, Waiting>();
  private welcomed: ((frame: WelcomeFrame) => void) | null = null;
  private failed: ((error: Error) => void) | null = null;
  private closedWith: SocketClosed | null = null;

  private constructor(private readonly options: RoomSocketOptions) {
    this.ws = options.webSocket(options.url, [SUBPROTOCOL, `bearer.${options.token}`]);
    this.ws.onmessage = (event) => this.received(event.data);
    this.ws.onclose = (event) => this.closed(event.code, event.reason);
    this.ws.onerror = () => undefined;
  }

  /** Opens the socket; resolves with the server's `welcome` frame. */
  static open(options: RoomSocketOptions): Promise<{ socket: RoomSocket; welcome: WelcomeFrame }> {
    return new Promise((resolve, reject) => {
      const socket = new RoomSocket(options);
      socket.welcomed = (welcome) => resolve({ socket, welcome });
      socket.failed = reject;
    });
  }

  get open(): boolean {
    return this.closedWith === null && this.ws.readyState === 1;
  }

  /** Broadcasts one ciphertext; resolves with its `seq` once acked. */
  broadcast(id: string, ciphertext: string): Promise<number> {
    return this.request(id, { type: "send", id, ciphertext });
  }

  /** Sends each device its own ciphertext; resolves with the `seq` once acked. */
  direct(id: string, recipients: Readonly<Record<string, string>>): Promise<number> {
    return this.request(id, { type: "send", id, recipients });
  }

  resume(after: number): void {
    this.write({ type: "resume", after });
  }

  ping(): void {
    this.write({ type: "ping" });
  }

  close(code = 1000, reason = ""): void {
    this.ws.close(code, reason);
  }

  private request(id: string, frame: Record<string, unknown>): Promise<number> {
    if (this.closedWith !== null) return Promise.reject(this.closedWith);
    if (this.waiting.has(id)) return Promise.reject(new Error(`a send with id ${id} is already waiting`));
    return new Promise<number>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.write(frame);
    });
  }

  private write(frame: Record<string, unknown>): void {
    if (this.ws.readyState === 1) this.ws.send(JSON.stringify(frame));
  }

  private received(data: unknown): void {
    const frame = parseFrame(data);
    if (frame === null) return;
    switch (frame.type) {
      case "welcome": {
        const welcomed = this.welcomed;
        this.welcomed = null;
        this.failed = null;
        welcomed?.(frame);
        return;
      }
      case "ack": {
        const waiting = this.waiting.get(frame.id);
        if (waiting !== undefined) {
          this.waiting.delete(frame.id);
          waiting.resolve(frame.seq);
        }
        return;
      }
      case "error": {
        const waiting = frame.id === undefined ? undefined : this.waiting.get(frame.id);
        if (waiting !== undefined && frame.id !== undefined) {
          this.waiting.delete(frame.id);
          waiting.reject(new SendRefused(frame.code, frame.detail, frame.epoch));
          return;
        }
        break;
      }
      default:
        break;
    }
    this.options.onFrame(frame);
  }

  private closed(code: number, reason: string): void {
    const error = new SocketClosed(code, reason);
    this.closedWith = error;
    for (const waiting of this.waiting.values()) waiting.reject(error);
    this.waiting.clear();
    const failed = this.failed;
    this.failed = null;
    this.welcomed = null;
    if (failed !== null) {
      failed(error);
      return;
    }
    this.options.onClose(code, reason);
  }
}
