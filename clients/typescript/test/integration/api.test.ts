import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Api, ProblemError, type Tokens } from "../../src/api.js";
import { type TestServer, startServer } from "../support/server.js";

let server: TestServer;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

async function problem(promise: Promise<unknown>, status: number, code: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ProblemError, String(error));
    assert.equal(error.status, status);
    assert.equal(error.code, code);
    return true;
  });
}

test("a client registers, logs in and reads its account; errors carry the problem's code", async () => {
  const api = new Api({ baseUrl: server.baseUrl });
  const email = `reader-${Date.now()}@example.org`;
  const account = await api.register(email, "a long enough password 1", "Reader");
  assert.equal(account.role, "client");
  await problem(api.register(email, "a long enough password 1", "Reader"), 409, "email_taken");
  await problem(api.login(email, "the wrong password 1"), 401, "invalid_credentials");
  await problem(api.me(), 401, "token_invalid");
  const tokens = await api.login(email, "a long enough password 1");
  assert.ok(tokens.expiresAt > Date.now());
  assert.deepEqual(await api.me(), account);
  await problem(api.room("00000000-0000-4000-8000-000000000000"), 404, "not_found");
});

test("refresh rotates the pair, tells onTokens, and a spent refresh token revokes the family", async () => {
  const person = await server.person("client");
  const seen: (Tokens | null)[] = [];
  const first = person.api.tokens as Tokens;
  const api = new Api({ baseUrl: server.baseUrl, tokens: first, onTokens: (t) => void seen.push(t) });
  const second = await api.refresh();
  assert.notEqual(second.refreshToken, first.refreshToken);
  assert.deepEqual(seen, [second]);
  assert.equal((await api.me()).id, person.id);

  const replay = new Api({ baseUrl: server.baseUrl, tokens: first });
  await problem(replay.refresh(), 401, "refresh_reused");
  assert.equal(replay.tokens, null);
  // The whole family is revoked: the rotated pair is dead too.
  await problem(api.refresh(), 401, "token_invalid");
  assert.equal(seen.at(-1), null);
  assert.equal(api.tokens, null);
});

test("an expired access token is refreshed once and the call retried", async () => {
  const person = await server.person("client");
  const real = person.api.tokens as Tokens;
  const seen: (Tokens | null)[] = [];
  const stale = { accessToken: "expired.access.token", refreshToken: real.refreshToken, expiresAt: Date.now() - 1000 };
  const api = new Api({ baseUrl: server.baseUrl, tokens: stale, onTokens: (t) => void seen.push(t) });
  assert.equal((await api.me()).id, person.id);
  assert.equal(seen.length, 1);
  assert.notEqual(api.tokens?.refreshToken, real.refreshToken);

  // An invalid token that has not expired by its clock is an error, not a reason to refresh.
  const fresh = { ...(api.tokens as Tokens), accessToken: "not.a.token" };
  const other = new Api({ baseUrl: server.baseUrl, tokens: fresh, onTokens: (t) => void seen.push(t) });
  await problem(other.me(), 401, "token_invalid");
  assert.equal(seen.length, 1);
});

test("calls that meet an expired token at once share one refresh (a second would spend the token twice)", async () => {
  const person = await server.person("client");
  const real = person.api.tokens as Tokens;
  const seen: (Tokens | null)[] = [];
  const stale = { accessToken: "expired.access.token", refreshToken: real.refreshToken, expiresAt: Date.now() - 1000 };
  const api = new Api({ baseUrl: server.baseUrl, tokens: stale, onTokens: (t) => void seen.push(t) });
  const answers = await Promise.all([api.me(), api.devices(), api.rooms(), api.myConsents()]);
  assert.equal(answers[0].id, person.id);
  assert.equal(seen.length, 1);
  assert.equal((await api.me()).id, person.id);
});

test("logout ends the log-in", async () => {
  const person = await server.person("client");
  const tokens = person.api.tokens as Tokens;
  await person.api.logout();
  assert.equal(person.api.tokens, null);
  await problem(new Api({ baseUrl: server.baseUrl, tokens }).me(), 401, "token_invalid");
});

test("the JWKS and consent documents are public", async () => {
  const api = new Api({ baseUrl: server.baseUrl });
  const jwks = await api.jwks();
  assert.ok(jwks.keys.length >= 1);
  assert.equal(jwks.keys[0]?.alg, "ES256");
  await server.publishConsent();
  const kinds = (await api.consentDocuments()).map((d) => d.kind).sort();
  assert.deepEqual(kinds, ["group_agreement", "informed_consent", "telehealth"]);
});

test("a counselor's room: invite, decline, accept, admit, token, end", async () => {
  await server.publishConsent();
  const counselor = await server.person("counselor");
  const client = await server.person("client");
  await problem(client.api.createRoom({ title: "Nope", kind: "individual" }), 403, "forbidden");
  const room = await counselor.api.createRoom({ title: "Tuesday", kind: "individual" });
  assert.equal(room.waiting_room, true);

  const first = await counselor.api.addParticipant(room.id, { email: client.email });
  assert.ok("invitation_id" in first && first.status === "pending");
  const [invitation] = await client.api.invitations();
  assert.equal(invitation?.room_id, room.id);
  await client.api.declineInvitation(invitation?.id ?? "");
  assert.deepEqual(await client.api.invitations(), []);

  await counselor.api.addParticipant(room.id, { account_id: client.id });
  const [again] = await client.api.invitations();
  const joined = await client.api.acceptInvitation(again?.id ?? "");
  assert.equal(joined.id, room.id);
  assert.deepEqual((await client.api.rooms()).map((r) => r.id), [room.id]);
  const seat = (await client.api.room(room.id)).participants.find((p) => p.account_id === client.id);
  assert.equal(seat?.admitted, false);
  assert.equal((await counselor.api.admit(room.id, client.id)).admitted, true);

  await problem(client.api.roomToken(room.id, "00000000-0000-4000-8000-000000000000"), 404, "not_found");
  assert.equal(await client.api.groupInfo(room.id), null);
  const ice = await client.api.iceServers(room.id).catch((e: unknown) => e);
  assert.ok(ice instanceof ProblemError && ice.code === "consent_required", String(ice));
  for (const doc of await client.api.consentDocuments()) await client.api.acceptConsent(doc.id);
  assert.equal((await client.api.myConsents()).length, 3);
  assert.ok(Array.isArray((await client.api.iceServers(room.id)).ice_servers));

  assert.equal((await counselor.api.endRoom(room.id)).status, "ended");
  await problem(client.api.iceServers(room.id), 409, "room_ended");
  await counselor.api.removeParticipant(room.id, client.id).catch((e: unknown) => assert.ok(e instanceof ProblemError));
});

test("a list longer than a page is read whole, by following X-Next-Cursor", async () => {
  const counselor = await server.person("counselor");
  const titles = ["one", "two", "three", "four", "five"];
  for (const title of titles) await counselor.api.createRoom({ title, kind: "individual" });
  // Pages of two, so that the five rooms take three pages.
  const pages: string[] = [];
  const small: typeof fetch = (input, init) => {
    const url = new URL(String(input));
    if (url.pathname === "/v1/rooms" && (init?.method ?? "GET") === "GET") {
      url.searchParams.set("limit", "2");
      pages.push(url.search);
    }
    return fetch(url, init);
  };
  const paged = new Api({ baseUrl: server.baseUrl, fetch: small });
  await paged.login(counselor.email, counselor.password);
  const rooms = await paged.rooms();
  assert.deepEqual(rooms.map((r) => r.title).sort(), [...titles].sort());
  assert.equal(pages.length, 3);
  assert.equal(pages.filter((q) => q.includes("cursor=")).length, 2);
});
