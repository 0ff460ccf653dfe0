/**
 * `ConfideClient`: what an app uses. It logs a person in, sets up this
 * installation as one of their devices, accepts invitations and consents,
 * joins rooms (end-to-end encrypted with MLS), and computes and records
 * safety numbers. Everything it keeps goes through the `Store` it is given,
 * sealed (in browsers: IndexedDB, under a non-extractable key).
 */

import { Api, type Account as Me, type ConsentDocument, type Invitation, type Room as RoomView, type Tokens } from "./api.js";
import { Contacts } from "./contacts.js";
import { Device } from "./device.js";
import { JwksCache } from "./jws.js";
import { keyLogAuthenticationService } from "./mls.js";
import { Room, type RoomContext } from "./room.js";
import { type WebSocketFactory, defaultWebSocketFactory } from "./socket.js";
import { type Store, sealedStore } from "./store.js";
import { IndexedDbStore } from "./store-browser.js";

export interface ClientOptions {
  /** The server's base URL, such as `https://confide.example` (no `/v1`). */
  readonly baseUrl: string;
  /** Where keys and state are kept (sealed by the client); in browsers, IndexedDB by default. */
  readonly store?: Store;
  /** How to open a WebSocket; the global one by default. */
  readonly webSocket?: WebSocketFactory;
  readonly fetch?: typeof fetch;
  /** Milliseconds before the n-th reconnection attempt in a row. */
  readonly backoff?: (attempt: number) => number;
}

const TOKENS = "session/tokens";

/** The browser's IndexedDB, where CryptoKeys are kept as non-extractable objects. */
function defaultStore(): Store {
  if (typeof indexedDB === "undefined") throw new Error("no IndexedDB here: pass a store (FileStore in Node)");
  return new IndexedDbStore("confide");
}

export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

export class ConfideClient {
  me: Me | null = null;
  private device: Device | null = null;
  private readonly contacts: Contacts;
  private readonly rooms_ = new Map<string, Room>();

  private constructor(
    private readonly options: ClientOptions,
    private readonly store: Store,
    readonly api: Api,
  ) {
    this.contacts = new Contacts(api, store, new JwksCache(() => api.jwks()));
  }

  /** A client on `options.store`, sealed; call `resume()` or `login()` next. */
  static async open(options: ClientOptions): Promise<ConfideClient> {
    const store = await sealedStore(options.store ?? defaultStore());
    const saved = await store.get(TOKENS);
    let tokens: Tokens | undefined;
    if (saved !== undefined) {
      try {
        tokens = JSON.parse(new TextDecoder().decode(saved)) as Tokens;
      } catch {
        tokens = undefined;
      }
    }
    const api = new Api({
      baseUrl: options.baseUrl,
      ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
      ...(tokens === undefined ? {} : { tokens }),
      onTokens: async (next) => {
        if (next === null) await store.delete(TOKENS);
        else await store.put(TOKENS, new TextEncoder().encode(JSON.stringify(next)));
      },
    });
    return new ConfideClient(options, store, api);
  }

  async login(email: string, password: string): Promise<Me> {
    await this.api.login(email, password);
    this.me = await this.api.me();
    this.device = null;
    return this.me;
  }

  /** The person of the stored session (after a reload), or null if there is none that still works. */
  async resume(): Promise<Me | null> {
    if (this.api.tokens === null) return null;
    try {
      this.me = await this.api.me();
    } catch {
      await this.store.delete(TOKENS);
      this.me = null;
      return null;
    }
    this.device = await Device.load(this.store, this.me.id);
    return this.me;
  }

  async logout(): Promise<void> {
    for (const room of this.rooms_.values()) room.close();
    this.rooms_.clear();
    try {
      await this.api.logout();
    } finally {
      await this.store.delete(TOKENS);
      this.me = null;
      this.device = null;
    }
  }

  /** This installation as a device of the person: loaded, or registered on first use. */
  async ensureDevice(label: string): Promise<void> {
    const me = this.requireMe();
    this.device = (await Device.load(this.store, me.id)) ?? (await Device.register(this.api, this.store, me.id, label));
    await this.device.topUp(this.api);
  }

  get deviceId(): string | null {
    return this.device?.deviceId ?? null;
  }

  invitations(): Promise<Invitation[]> {
    return this.api.invitations();
  }

  acceptInvitation(id: string): Promise<RoomView> {
    return this.api.acceptInvitation(id);
  }

  /** The current consent documents the person has not accepted yet. */
  async consentsToAccept(): Promise<ConsentDocument[]> {
    const [documents, accepted] = await Promise.all([this.api.consentDocuments(), this.api.myConsents()]);
    const done = new Set(accepted.map((a) => a.document_id));
    return documents.filter((d) => !done.has(d.id));
  }

  async acceptConsent(documentId: string): Promise<void> {
    await this.api.acceptConsent(documentId);
  }

  rooms(): Promise<RoomView[]> {
    return this.api.rooms();
  }

  async admit(roomId: string, accountId: string): Promise<void> {
    await this.api.admit(roomId, accountId);
  }

  /** Joins a room: opens its socket and its encrypted group. */
  async joinRoom(roomId: string): Promise<Room> {
    this.rooms_.get(roomId)?.close();
    const device = this.requireDevice();
    const context: RoomContext = {
      api: this.api,
      store: this.store,
      device,
      contacts: this.contacts,
      auth: keyLogAuthenticationService((accountId, deviceId) => this.contacts.deviceKey(accountId, deviceId)),
      webSocket: this.options.webSocket ?? defaultWebSocketFactory(),
      ...(this.options.backoff === undefined ? {} : { backoff: this.options.backoff }),
    };
    const room = new Room(context, roomId);
    this.rooms_.set(roomId, room);
    await room.start();
    return room;
  }

  /** The 60-digit safety number of the person and `accountId`, from both verified key logs. */
  safetyNumber(accountId: string): Promise<string> {
    return this.contacts.safetyNumber(this.requireMe().id, accountId);
  }

  markVerified(accountId: string): Promise<void> {
    return this.contacts.markVerified(accountId);
  }

  isVerified(accountId: string): Promise<boolean> {
    return this.contacts.isVerified(accountId);
  }

  /** Contacts whose keys changed since the last call (`identityChanged && wasVerified` needs a warning). */
  keyChanges(): ReturnType<Contacts["checkChanges"]> {
    return this.contacts.checkChanges();
  }

  /** STUN/TURN servers for the room's calls, as RTCPeerConnection takes them. */
  async iceServers(roomId: string): Promise<IceServer[]> {
    const answer = await this.api.iceServers(roomId);
    return answer.ice_servers.map((s) => ({
      urls: s.urls,
      ...(s.username === undefined || s.username === null ? {} : { username: s.username }),
      ...(s.credential === undefined || s.credential === null ? {} : { credential: s.credential }),
    }));
  }

  private requireMe(): Me {
    if (this.me === null) throw new Error("log in first");
    return this.me;
  }

  private requireDevice(): Device {
    if (this.device === null) throw new Error("set up this device first (ensureDevice)");
    return this.device;
  }
}
