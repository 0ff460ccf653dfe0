/**
 * A typed REST client for Confide's `/v1` API (docs/PROTOCOL.md) over `fetch`.
 *
 * Responses keep the wire's field names (snake_case), except where bytes
 * travel: those methods take and give `Uint8Array` (base64url without
 * padding on the wire). Every non-2xx answer is a `ProblemError` carrying the
 * problem details' `code`.
 *
 * Authenticated calls send the access token as a bearer. A 401
 * `token_expired` (or `token_invalid` once the access token is past
 * `expiresAt`) refreshes once and retries the call; the refresh token
 * rotates, and `onTokens` gets each new pair (and `null` after logout or a
 * failed refresh) so an app can persist it.
 */

import { fromBase64Url, toBase64Url } from "./bytes.js";
import type { Jwks } from "./jws.js";
import type { WireEntry } from "./keylog.js";

export class ProblemError extends Error {
  readonly status: number;
  readonly code: string;
  readonly body: Record<string, unknown>;

  constructor(status: number, body: Record<string, unknown>) {
    const code = typeof body["code"] === "string" ? body["code"] : `http_${status}`;
    const detail = typeof body["detail"] === "string" ? body["detail"] : (body["title"] ?? "");
    super(`${status} ${code}: ${String(detail)}`);
    this.name = "ProblemError";
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

/** A log-in: `expiresAt` is when the access token expires, in milliseconds since the Unix epoch. */
export interface Tokens {
  accessToken: string;
  refreshToken: string;
  expiresAt: number;
}

export interface Account {
  id: string;
  email: string;
  display_name: string;
  role: "client" | "counselor" | "admin";
  created_at: string;
}

export interface DeviceRegistration {
  device_id: string;
  label: string;
  public_key: string;
  signing_key: string;
  signature: string;
  identity_key?: string;
}

export interface DeviceOut {
  device_id: string;
  label: string;
  public_key: string;
  signing_key: string | null;
  signature: string | null;
  created_at: string;
}

export interface IdentityReset {
  identity_key: string;
  device: Omit<DeviceRegistration, "identity_key">;
}

export interface KeyPackageStock {
  count: number;
  last_resort: boolean;
}

export interface ClaimedKeyPackage {
  deviceId: string;
  /** The encoded MLSMessage (wire_format 5). */
  keyPackage: Uint8Array;
  lastResort: boolean;
}

export interface KeyLogView {
  account_id: string;
  entries: WireEntry[];
  head: { seq: number; hash: string; jws: string } | null;
}

export interface KeyChangeOut {
  account_id: string;
  seq: number;
  kind: string;
  device_id: string | null;
  at: string;
}

export interface Invitation {
  id: string;
  room_id: string;
  host: { account_id: string; display_name: string };
  title: string;
  starts_at: string | null;
  ends_at: string | null;
  created_at: string;
}

export interface ConsentDocument {
  id: string;
  kind: string;
  locale: string;
  version: number;
  title: string;
  body: string;
  sha256: string;
  published_at: string;
}

export interface Consent {
  document_id: string;
  sha256: string;
  accepted_at: string;
}

export interface Participant {
  account_id: string;
  display_name: string;
  role: string;
  admitted: boolean;
}

export interface Room {
  id: string;
  title: string;
  kind: "individual" | "group";
  status: "scheduled" | "open" | "ended";
  starts_at: string | null;
  ends_at: string | null;
  max_participants: number;
  waiting_room: boolean;
  locked: boolean;
  participants: Participant[];
  mls_group_id: string;
}

export interface NewRoom {
  title: string;
  kind: "individual" | "group";
  starts_at?: string;
  ends_at?: string;
  max_participants?: number;
  waiting_room?: boolean;
}

export type AddParticipantResult = Participant | { invitation_id: string; status: "pending" };

export interface RoomToken {
  token: string;
  expires_at: string;
  ws_url: string;
}

export interface IceServers {
  ice_servers: { urls: string[] | string; username?: string; credential?: string }[];
  expires_at: string;
}

interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in: number;
  refresh_token: string;
}

type Body = { json: unknown } | { form: Record<string, string> } | undefined;

export interface ApiOptions {
  baseUrl: string;
  fetch?: typeof fetch;
  tokens?: Tokens;
  onTokens?: (tokens: Tokens | null) => void | Promise<void>;
}

const seg = encodeURIComponent;

export class Api {
  tokens: Tokens | null;
  readonly #base: string;
  readonly #fetch: typeof fetch;
  readonly #onTokens: ((tokens: Tokens | null) => void | Promise<void>) | undefined;
  #refreshing: Promise<void> | null = null;

  constructor(opts: ApiOptions) {
    this.#base = opts.baseUrl.replace(/\/+$/, "");
    this.#fetch = opts.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.tokens = opts.tokens ?? null;
    this.#onTokens = opts.onTokens;
  }

  // -- transport ------------------------------------------------------------------

  async #send(method: string, path: string, body: Body, auth: boolean): Promise<Response> {
    const headers: Record<string, string> = { accept: "application/json" };
    let payload: string | undefined;
    if (body !== undefined && "json" in body) {
      headers["content-type"] = "application/json";
      payload = JSON.stringify(body.json);
    } else if (body !== undefined) {
      headers["content-type"] = "application/x-www-form-urlencoded";
      payload = new URLSearchParams(body.form).toString();
    }
    if (auth) {
      if (this.tokens === null) throw new ProblemError(401, { code: "token_invalid", detail: "not logged in" });
      headers["authorization"] = `Bearer ${this.tokens.accessToken}`;
    }
    const init: RequestInit = { method, headers };
    if (payload !== undefined) init.body = payload;
    return this.#fetch(`${this.#base}${path}`, init);
  }

  static async #problem(response: Response): Promise<ProblemError> {
    let body: Record<string, unknown> = {};
    try {
      const parsed: unknown = await response.json();
      if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
        body = parsed as Record<string, unknown>;
      }
    } catch {
      // not JSON: the status alone says what happened
    }
    return new ProblemError(response.status, body);
  }

  /** The response of a call; authenticated calls refresh once on an expired access token. */
  async #call(method: string, path: string, body?: Body, auth = true): Promise<Response> {
    const sent = this.tokens;
    let response = await this.#send(method, path, body, auth);
    if (auth && response.status === 401 && sent !== null) {
      const problem = await Api.#problem(response);
      const expired =
        problem.code === "token_expired" || (problem.code === "token_invalid" && Date.now() >= sent.expiresAt);
      if (!expired) throw problem;
      if (this.tokens === sent) await this.refresh();
      response = await this.#send(method, path, body, auth);
    }
    if (!response.ok) throw await Api.#problem(response);
    return response;
  }

  async #json<T>(method: string, path: string, body?: Body, auth = true): Promise<T> {
    const response = await this.#call(method, path, body, auth);
    return (await response.json()) as T;
  }

  /**
   * Every item of a list: its pages one after the other, following the
   * `X-Next-Cursor` each page carries while more follow (docs/PROTOCOL.md,
   * "Conventions").
   */
  async #list<T>(path: string): Promise<T[]> {
    const items: T[] = [];
    let cursor: string | null = null;
    do {
      const page: string =
        cursor === null ? path : `${path}${path.includes("?") ? "&" : "?"}cursor=${encodeURIComponent(cursor)}`;
      const response = await this.#call("GET", page);
      items.push(...((await response.json()) as T[]));
      cursor = response.headers.get("x-next-cursor");
    } while (cursor !== null && cursor !== "");
    return items;
  }

  async #none(method: string, path: string, body?: Body): Promise<void> {
    const response = await this.#call(method, path, body);
    await response.body?.cancel();
  }

  async #setTokens(tokens: Tokens | null): Promise<void> {
    this.tokens = tokens;
    await this.#onTokens?.(tokens);
  }

  async #took(response: TokenResponse): Promise<Tokens> {
    const tokens = {
      accessToken: response.access_token,
      refreshToken: response.refresh_token,
      expiresAt: Date.now() + response.expires_in * 1000,
    };
    await this.#setTokens(tokens);
    return tokens;
  }

  // -- accounts and sessions -----------------------------------------------------------

  register(email: string, password: string, displayName: string): Promise<Account> {
    return this.#json("POST", "/v1/accounts", { json: { email, password, display_name: displayName } }, false);
  }

  async login(email: string, password: string): Promise<Tokens> {
    const form = { grant_type: "password", username: email, password };
    return this.#took(await this.#json<TokenResponse>("POST", "/v1/auth/token", { form }, false));
  }

  /** A new token pair for the refresh token (which is spent). A failure drops the tokens. */
  async refresh(): Promise<Tokens> {
    const tokens = this.tokens;
    if (tokens === null) throw new ProblemError(401, { code: "token_invalid", detail: "not logged in" });
    this.#refreshing ??= (async () => {
      try {
        const body = { json: { refresh_token: tokens.refreshToken } };
        await this.#took(await this.#json<TokenResponse>("POST", "/v1/auth/refresh", body, false));
      } catch (error) {
        if (error instanceof ProblemError && error.status === 401) await this.#setTokens(null);
        throw error;
      } finally {
        this.#refreshing = null;
      }
    })();
    await this.#refreshing;
    if (this.tokens === null) throw new ProblemError(401, { code: "token_invalid", detail: "not logged in" });
    return this.tokens;
  }

  async logout(): Promise<void> {
    try {
      await this.#none("POST", "/v1/auth/logout");
    } finally {
      await this.#setTokens(null);
    }
  }

  me(): Promise<Account> {
    return this.#json("GET", "/v1/me");
  }

  jwks(): Promise<Jwks> {
    return this.#json("GET", "/.well-known/jwks.json", undefined, false);
  }

  // -- devices and keys ------------------------------------------------------------------

  registerDevice(body: DeviceRegistration): Promise<DeviceOut> {
    return this.#json("POST", "/v1/devices", { json: body });
  }

  devices(): Promise<DeviceOut[]> {
    return this.#list("/v1/devices");
  }

  revokeDevice(deviceId: string): Promise<void> {
    return this.#none("DELETE", `/v1/devices/${seg(deviceId)}`);
  }

  resetIdentity(body: IdentityReset): Promise<DeviceOut> {
    return this.#json("POST", "/v1/me/identity/reset", { json: body });
  }

  uploadKeyPackages(deviceId: string, packages: Uint8Array[], lastResort?: Uint8Array): Promise<KeyPackageStock> {
    const json: Record<string, unknown> = { key_packages: packages.map(toBase64Url) };
    if (lastResort !== undefined) json["last_resort"] = toBase64Url(lastResort);
    return this.#json("POST", `/v1/devices/${seg(deviceId)}/key-packages`, { json });
  }

  keyPackageStock(deviceId: string): Promise<KeyPackageStock> {
    return this.#json("GET", `/v1/devices/${seg(deviceId)}/key-packages`);
  }

  async claimKeyPackages(roomId: string, deviceIds: string[]): Promise<ClaimedKeyPackage[]> {
    const answer = await this.#json<{
      key_packages: { device_id: string; key_package: string; last_resort: boolean }[];
    }>("POST", `/v1/rooms/${seg(roomId)}/key-packages/claim`, { json: { device_ids: deviceIds } });
    return answer.key_packages.map((p) => ({
      deviceId: p.device_id,
      keyPackage: fromBase64Url(p.key_package),
      lastResort: p.last_resort,
    }));
  }

  keyLog(accountId: string, after = 0): Promise<KeyLogView> {
    return this.#json("GET", `/v1/accounts/${seg(accountId)}/key-log?after=${after}`);
  }

  /** `after`: an RFC 3339 time (the latest `at` seen). */
  keyChanges(after?: string): Promise<KeyChangeOut[]> {
    const query = after === undefined ? "" : `?after=${encodeURIComponent(after)}`;
    return this.#list(`/v1/me/key-changes${query}`);
  }

  // -- invitations and consent ---------------------------------------------------------------

  invitations(): Promise<Invitation[]> {
    return this.#list("/v1/me/invitations");
  }

  acceptInvitation(invitationId: string): Promise<Room> {
    return this.#json("POST", `/v1/me/invitations/${seg(invitationId)}/accept`);
  }

  declineInvitation(invitationId: string): Promise<void> {
    return this.#none("POST", `/v1/me/invitations/${seg(invitationId)}/decline`);
  }

  consentDocuments(): Promise<ConsentDocument[]> {
    return this.#json("GET", "/v1/consent-documents", undefined, false);
  }

  acceptConsent(documentId: string): Promise<Consent> {
    return this.#json("POST", "/v1/me/consents", { json: { document_id: documentId } });
  }

  myConsents(): Promise<Consent[]> {
    return this.#list("/v1/me/consents");
  }

  // -- rooms ------------------------------------------------------------------------------------

  rooms(): Promise<Room[]> {
    return this.#list("/v1/rooms");
  }

  room(roomId: string): Promise<Room> {
    return this.#json("GET", `/v1/rooms/${seg(roomId)}`);
  }

  createRoom(body: NewRoom): Promise<Room> {
    return this.#json("POST", "/v1/rooms", { json: body });
  }

  addParticipant(roomId: string, who: { email: string } | { account_id: string }): Promise<AddParticipantResult> {
    return this.#json("POST", `/v1/rooms/${seg(roomId)}/participants`, { json: who });
  }

  admit(roomId: string, accountId: string): Promise<Participant> {
    return this.#json("POST", `/v1/rooms/${seg(roomId)}/participants/${seg(accountId)}/admit`);
  }

  removeParticipant(roomId: string, accountId: string): Promise<void> {
    return this.#none("DELETE", `/v1/rooms/${seg(roomId)}/participants/${seg(accountId)}`);
  }

  endRoom(roomId: string): Promise<Room> {
    return this.#json("POST", `/v1/rooms/${seg(roomId)}/end`);
  }

  roomToken(roomId: string, deviceId: string): Promise<RoomToken> {
    return this.#json("POST", `/v1/rooms/${seg(roomId)}/token`, { json: { device_id: deviceId } });
  }

  iceServers(roomId: string): Promise<IceServers> {
    return this.#json("GET", `/v1/rooms/${seg(roomId)}/ice-servers`);
  }

  /** The room's latest GroupInfo (an encoded MLSMessage), or null before any upload. */
  async groupInfo(roomId: string): Promise<Uint8Array | null> {
    try {
      const answer = await this.#json<{ group_info: string }>("GET", `/v1/rooms/${seg(roomId)}/group-info`);
      return fromBase64Url(answer.group_info);
    } catch (error) {
      if (error instanceof ProblemError && error.status === 404) return null;
      throw error;
    }
  }

  putGroupInfo(roomId: string, groupInfo: Uint8Array): Promise<void> {
    return this.#none("PUT", `/v1/rooms/${seg(roomId)}/group-info`, { json: { group_info: toBase64Url(groupInfo) } });
  }
}
