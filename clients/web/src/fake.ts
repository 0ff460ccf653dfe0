/**
 * FakeClient: an in-memory stand-in for `ConfideClient`, used only until the SDK
 * implements the contract. Nothing leaves the page; one invented counselor
 * answers. The page shows a banner whenever it runs (`FAKE_CLIENT`).
 */
import { toHex } from "@confide/client";
import type {
  ConfideClient,
  ConsentDocument,
  Invitation,
  Me,
  Participant,
  Room,
  RoomEvents,
  RoomView,
} from "./contract.js";

export const FAKE_CLIENT: string | null = "confide-fake-client";

const SESSION_KEY = "confide.fake.me";
const COUNSELOR: Participant = {
  accountId: "fake-counselor",
  displayName: "Dr. Rivera",
  role: "host",
  admitted: true,
  online: true,
  devices: ["fake-counselor-device"],
};

function now(): string {
  return new Date().toISOString();
}

function roomView(id: string, title: string, me: Me): RoomView {
  return {
    id,
    title,
    kind: "individual",
    status: "open",
    starts_at: now(),
    ends_at: null,
    waiting_room: true,
    locked: false,
    participants: [
      { account_id: COUNSELOR.accountId, display_name: COUNSELOR.displayName, role: "host", admitted: true },
      { account_id: me.id, display_name: me.display_name, role: me.role === "counselor" ? "host" : "participant", admitted: false },
    ],
    mls_group_id: toHex(new TextEncoder().encode(id)),
  };
}

class FakeRoom implements Room {
  state: Room["state"] = "connecting";
  secure = false;
  readonly self: { accountId: string; deviceId: string };
  private readonly handlers = new Map<keyof RoomEvents, Set<(event: never) => void>>();
  private readonly people: Participant[];
  private seq = 0;
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();

  constructor(
    readonly id: string,
    private readonly me: Me,
  ) {
    this.self = { accountId: me.id, deviceId: `${me.id}-device` };
    this.people = [
      { ...COUNSELOR },
      {
        accountId: me.id,
        displayName: me.display_name,
        role: me.role === "counselor" ? "host" : "participant",
        admitted: false,
        online: true,
        devices: [this.self.deviceId],
      },
    ];
    this.later(50, () => {
      this.state = "waiting";
      this.emit("waiting", {});
      this.emit("participants", { participants: this.participants() });
    });
    this.later(1500, () => {
      const mine = this.people[1];
      if (mine) mine.admitted = true;
      this.state = "admitted";
      this.secure = true;
      this.emit("admitted", {});
      this.emit("participants", { participants: this.participants() });
      this.emit("ready", { epoch: 1n });
    });
  }

  on<K extends keyof RoomEvents>(type: K, handler: (event: RoomEvents[K]) => void): () => void {
    const set = this.handlers.get(type) ?? new Set();
    this.handlers.set(type, set);
    set.add(handler);
    return () => void set.delete(handler);
  }

  participants(): Participant[] {
    return this.people.map((p) => ({ ...p, devices: [...p.devices] }));
  }

  async send(content: string | Uint8Array): Promise<void> {
    const text = typeof content === "string" ? content : new TextDecoder().decode(content);
    const sender = { accountId: this.me.id, deviceId: this.self.deviceId, displayName: this.me.display_name };
    this.emit("message", { seq: ++this.seq, sender, text, own: true });
    this.later(400, () => {
      const from = { accountId: COUNSELOR.accountId, deviceId: COUNSELOR.devices[0] ?? "", displayName: COUNSELOR.displayName };
      this.emit("message", { seq: ++this.seq, sender: from, text: `I hear you: ${text}`, own: false });
    });
  }

  async sendTo(deviceId: string, bytes: Uint8Array): Promise<void> {
    // The invented counselor has no browser: signals go nowhere.
    void deviceId;
    void bytes;
  }

  close(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.state = "ended";
  }

  private later(ms: number, run: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      run();
    }, ms);
    this.timers.add(timer);
  }

  private emit<K extends keyof RoomEvents>(type: K, event: RoomEvents[K]): void {
    for (const handler of this.handlers.get(type) ?? []) (handler as (event: RoomEvents[K]) => void)(event);
  }
}

export class FakeClient implements ConfideClient {
  me: Me | null = null;
  private readonly accepted = new Set<string>();
  private readonly verified = new Set<string>();
  private readonly joined: RoomView[] = [];
  private pending: Invitation[] = [];

  static async open(opts: { baseUrl: string }): Promise<FakeClient> {
    void opts;
    return new FakeClient();
  }

  async login(email: string, password: string): Promise<Me> {
    if (!email.includes("@") || password.length < 12) {
      throw Object.assign(new Error("Wrong email or password."), { code: "invalid_credentials" });
    }
    const me: Me = { id: `fake-${email}`, email, display_name: email.split("@")[0] ?? email, role: "client" };
    this.start(me);
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(me));
    return me;
  }

  async resume(): Promise<Me | null> {
    const saved = sessionStorage.getItem(SESSION_KEY);
    if (saved === null) return null;
    this.start(JSON.parse(saved) as Me);
    return this.me;
  }

  async logout(): Promise<void> {
    sessionStorage.removeItem(SESSION_KEY);
    this.me = null;
  }

  async ensureDevice(label: string): Promise<void> {
    void label;
  }

  async invitations(): Promise<Invitation[]> {
    return [...this.pending];
  }

  async acceptInvitation(id: string): Promise<RoomView> {
    const invitation = this.pending.find((i) => i.id === id);
    if (!invitation || !this.me) throw Object.assign(new Error("No such invitation."), { code: "not_found" });
    this.pending = this.pending.filter((i) => i.id !== id);
    const view = roomView(invitation.room_id, invitation.title, this.me);
    this.joined.push(view);
    return view;
  }

  async consentsToAccept(): Promise<ConsentDocument[]> {
    return CONSENTS.filter((d) => !this.accepted.has(d.id));
  }

  async acceptConsent(documentId: string): Promise<void> {
    this.accepted.add(documentId);
  }

  async rooms(): Promise<RoomView[]> {
    return [...this.joined];
  }

  async admit(roomId: string, accountId: string): Promise<void> {
    void roomId;
    void accountId;
  }

  async joinRoom(roomId: string): Promise<Room> {
    if (!this.me) throw Object.assign(new Error("Not signed in."), { code: "unauthorized" });
    if (!this.joined.some((r) => r.id === roomId)) this.joined.push(roomView(roomId, "Session", this.me));
    return new FakeRoom(roomId, this.me);
  }

  async safetyNumber(accountId: string): Promise<string> {
    const pair = [this.me?.id ?? "", accountId].sort().join("|");
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-512", new TextEncoder().encode(pair)));
    let digits = "";
    for (let i = 0; digits.length < 60; i++) digits += String((digest[i % digest.length] ?? 0) % 10);
    return digits;
  }

  async markVerified(accountId: string): Promise<void> {
    this.verified.add(accountId);
  }

  async isVerified(accountId: string): Promise<boolean> {
    return this.verified.has(accountId);
  }

  async iceServers(roomId: string): Promise<RTCIceServer[]> {
    void roomId;
    return [];
  }

  private start(me: Me): void {
    this.me = me;
    this.pending = [
      {
        id: "fake-invitation",
        room_id: "fake-room",
        host: { account_id: COUNSELOR.accountId, display_name: COUNSELOR.displayName },
        title: "First session",
        starts_at: now(),
        ends_at: null,
        created_at: now(),
      },
    ];
  }
}

const CONSENTS: ConsentDocument[] = [
  {
    id: "fake-informed-consent",
    kind: "informed_consent",
    locale: "en",
    version: 1,
    title: "Informed consent",
    body: "What you say stays between you and your counselor, except where someone is at risk of harm or a court orders otherwise.",
    sha256: "",
    published_at: "2026-01-01T00:00:00Z",
  },
  {
    id: "fake-telehealth",
    kind: "telehealth",
    locale: "en",
    version: 1,
    title: "Online sessions",
    body: "Sessions over the internet can be interrupted, and a device others can use is a risk to your privacy.",
    sha256: "",
    published_at: "2026-01-01T00:00:00Z",
  },
];
