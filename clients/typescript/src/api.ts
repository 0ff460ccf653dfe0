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
 * failed refresh) so an app can persist it. Any other 401 (`step_up_required`,
 * `mfa_required`, `invalid_mfa`, ...) is thrown as it is: a refresh carries the
 * log-in's `amr` and `auth_time` forward, so it could never satisfy a step-up.
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

interface AccessTokenResponse {
  access_token: string;
  token_type: string;
  expires_in: number;
}

/** What a password log-in of an account with a second factor answers (401 `mfa_required`). */
export interface MfaChallenge {
  /** Single use, for `completeMfa` or `mfaPasskeyOptions`. */
  mfaToken: string;
  /** Those of `totp`, `webauthn`, `recovery_code` the account has. */
  methods: string[];
  /** Seconds the token lives. */
  expiresIn: number;
}

/**
 * The second step a log-in needs, if `error` is the `ProblemError` of a
 * password log-in answered 401 `mfa_required`; `null` for anything else.
 */
export function mfaChallenge(error: unknown): MfaChallenge | null {
  if (!(error instanceof ProblemError) || error.status !== 401 || error.code !== "mfa_required") return null;
  const { mfa_token: mfaToken, methods, expires_in: expiresIn } = error.body;
  if (typeof mfaToken !== "string" || typeof expiresIn !== "number") return null;
  if (!Array.isArray(methods) || !methods.every((m): m is string => typeof m === "string")) return null;
  return { mfaToken, methods, expiresIn };
}

/**
 * The `max_age` (seconds) of a 401 `step_up_required`, if `error` is one; `null`
 * otherwise. The app calls `Api.stepUp` and tries the act again.
 */
export function stepUpRequired(error: unknown): { maxAge: number } | null {
  if (!(error instanceof ProblemError) || error.status !== 401 || error.code !== "step_up_required") return null;
  const maxAge = error.body["max_age"];
  return { maxAge: typeof maxAge === "number" ? maxAge : 0 };
}

/** A code from an authenticator app, or one of the single-use recovery codes. */
export interface CodeProof {
  method: "totp" | "recovery_code";
  code: string;
}

/**
 * A passkey's answer: `credential` is the `PublicKeyCredential` that
 * `navigator.credentials.get()` gave for the options, as JSON (its `toJSON()`),
 * `challengeToken` the one answered with those options.
 */
export interface PasskeyProof {
  method: "webauthn";
  credential: Record<string, unknown>;
  challengeToken: string;
}

export type FactorProof = CodeProof | PasskeyProof;

/** A step-up's proof: a second factor, or the password for an account without one. */
export type StepUpProof = FactorProof | { method: "password"; password: string };

/** WebAuthn options (as JSON, for `PublicKeyCredential.parse*OptionsFromJSON`) and their single-use challenge token. */
export interface PasskeyOptions {
  options: Record<string, unknown>;
  challengeToken: string;
}

export interface TotpEnrolment {
  /** The factor's id, for `confirmTotp`. */
  id: string;
  /** base32, for apps that cannot read the URI. */
  secret: string;
  /** The `otpauth://` URI, usually shown as a QR code. */
  provisioningUri: string;
}

export interface Factor {
  id: string;
  kind: "totp" | "webauthn";
  label: string;
  created_at: string;
  confirmed: boolean;
}

export interface Factors {
  factors: Factor[];
  recovery_codes_remaining: number;
}

interface Enrolled extends AccessTokenResponse {
  factor: Factor;
  recovery_codes?: string[] | null;
}

/** A live log-in of the caller; times are truncated to the hour. */
export interface Login {
  id: string;
  /** A coarse label from the User-Agent at log-in (`"Firefox on Linux"`, `"curl"`, `"unknown"`). */
  device: string;
  created_at: string;
  last_used_at: string;
  /** The log-in of the token that asked. */
  current: boolean;
}

function proofJson(proof: StepUpProof): Record<string, unknown> {
  switch (proof.method) {
    case "webauthn":
      return { method: proof.method, credential: proof.credential, challenge_token: proof.challengeToken };
    case "password":
      return { method: proof.method, password: proof.password };
    default:
      return { method: proof.method, code: proof.code };
  }
}

function passkeyOptions(answer: { options: Record<string, unknown>; challenge_token: string }): PasskeyOptions {
  return { options: answer.options, challengeToken: answer.challenge_token };
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

  /** A new access token for the same log-in (after a step-up or a factor's confirmation): the refresh token stays. */
  async #tookAccess(response: AccessTokenResponse): Promise<Tokens> {
    const current = this.tokens;
    if (current === null) throw new ProblemError(401, { code: "token_invalid", detail: "not logged in" });
    const tokens = {
      accessToken: response.access_token,
      refreshToken: current.refreshToken,
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

  /**
   * The second step of a log-in that answered `mfa_required` (see
   * `mfaChallenge`): a TOTP or recovery code, or a passkey's answer to
   * `mfaPasskeyOptions`. The token pair, as `login` gives it; the `mfaToken`
   * is spent. A wrong factor is 401 `invalid_mfa`.
   */
  async completeMfa(mfaToken: string, proof: FactorProof): Promise<Tokens> {
    const json = { mfa_token: mfaToken, ...proofJson(proof) };
    return this.#took(await this.#json<TokenResponse>("POST", "/v1/auth/mfa", { json }, false));
  }

  /** The WebAuthn request options for a log-in's passkey step, for `navigator.credentials.get()`. */
  async mfaPasskeyOptions(mfaToken: string): Promise<PasskeyOptions> {
    const body = { json: { mfa_token: mfaToken } };
    return passkeyOptions(await this.#json("POST", "/v1/auth/mfa/webauthn/options", body, false));
  }

  /**
   * Authenticates again for the acts that answer 401 `step_up_required`: a
   * second factor, or the password for an account without one. The answer's
   * access token replaces the current one (the refresh token stays, and the
   * tokens it is refreshed into keep the new authentication).
   */
  async stepUp(proof: StepUpProof): Promise<Tokens> {
    const body = { json: proofJson(proof) };
    return this.#tookAccess(await this.#json<AccessTokenResponse>("POST", "/v1/auth/step-up", body));
  }

  /** The WebAuthn request options for a step-up with one of the caller's passkeys. */
  async stepUpPasskeyOptions(): Promise<PasskeyOptions> {
    return passkeyOptions(await this.#json("POST", "/v1/auth/step-up/webauthn/options"));
  }

  /** The caller's live log-ins, most recently used first. */
  logins(): Promise<Login[]> {
    return this.#list("/v1/me/logins");
  }

  /** Ends one of the caller's log-ins (as log-out does); another's, or an ended one, is 404. */
  endLogin(loginId: string): Promise<void> {
    return this.#none("DELETE", `/v1/me/logins/${seg(loginId)}`);
  }

  /** A wrong current password is 401 `invalid_credentials`; every other log-in of the account ends. */
  changePassword(currentPassword: string, newPassword: string): Promise<void> {
    return this.#none("PUT", "/v1/me/password", {
      json: { current_password: currentPassword, new_password: newPassword },
    });
  }

  me(): Promise<Account> {
    return this.#json("GET", "/v1/me");
  }

  jwks(): Promise<Jwks> {
    return this.#json("GET", "/.well-known/jwks.json", undefined, false);
  }

  // -- second factors --------------------------------------------------------------------

  factors(): Promise<Factors> {
    return this.#json("GET", "/v1/me/factors");
  }

  /** A new, unconfirmed TOTP factor (step-up if the account has a factor already). */
  async beginTotp(label?: string): Promise<TotpEnrolment> {
    const json = label === undefined ? {} : { label };
    const answer = await this.#json<{ id: string; secret: string; provisioning_uri: string }>(
      "POST",
      "/v1/me/factors/totp",
      { json },
    );
    return { id: answer.id, secret: answer.secret, provisioningUri: answer.provisioning_uri };
  }

  /**
   * Confirms a TOTP factor with a code from the authenticator. Answers the
   * ten recovery codes when it is the account's first factor (shown this once),
   * else `null`; the answer's access token (carrying the factor) replaces the
   * current one. A wrong code is 401 `invalid_mfa`.
   */
  async confirmTotp(factorId: string, code: string): Promise<string[] | null> {
    const answer = await this.#json<Enrolled>("POST", `/v1/me/factors/totp/${seg(factorId)}/confirm`, {
      json: { code },
    });
    await this.#tookAccess(answer);
    return answer.recovery_codes ?? null;
  }

  /** The WebAuthn creation options to register a passkey, for `navigator.credentials.create()`. */
  async passkeyRegistrationOptions(): Promise<PasskeyOptions> {
    return passkeyOptions(await this.#json("POST", "/v1/me/factors/webauthn/options"));
  }

  /** Registers a passkey (the created `PublicKeyCredential` as JSON); answers as `confirmTotp` does. */
  async registerPasskey(
    credential: Record<string, unknown>,
    challengeToken: string,
    label?: string,
  ): Promise<string[] | null> {
    const json: Record<string, unknown> = { credential, challenge_token: challengeToken };
    if (label !== undefined) json["label"] = label;
    const answer = await this.#json<Enrolled>("POST", "/v1/me/factors/webauthn", { json });
    await this.#tookAccess(answer);
    return answer.recovery_codes ?? null;
  }

  /** Removes a factor (step-up for a confirmed one); removing the last voids the recovery codes. */
  removeFactor(factorId: string): Promise<void> {
    return this.#none("DELETE", `/v1/me/factors/${seg(factorId)}`);
  }

  /** Ten new recovery codes (step-up); the earlier ones are void. */
  async newRecoveryCodes(): Promise<string[]> {
    return (await this.#json<{ recovery_codes: string[] }>("POST", "/v1/me/recovery-codes")).recovery_codes;
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
