import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, test } from "node:test";

import { Api, ProblemError, type Tokens, mfaChallenge } from "../../src/api.js";
import { type TestServer, startServer } from "../support/server.js";

let server: TestServer;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

async function problem(promise: Promise<unknown>, status: number, code: string): Promise<ProblemError> {
  const error = await promise.then(
    () => assert.fail(`expected ${status} ${code}`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof ProblemError, String(error));
  assert.equal(error.status, status);
  assert.equal(error.code, code);
  return error;
}

function base32(text: string): Buffer {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const char of text.replace(/=+$/, "").toUpperCase()) {
    const value = alphabet.indexOf(char);
    assert.ok(value >= 0, `not base32: ${char}`);
    bits += value.toString(2).padStart(5, "0");
  }
  const bytes: number[] = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

/** RFC 6238 (SHA-1, 6 digits, 30 s steps) at a step. */
function totp(secret: string, step: number): string {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac("sha1", base32(secret)).update(counter).digest();
  const offset = (mac[mac.length - 1] ?? 0) & 0x0f;
  const value = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(value % 1_000_000).padStart(6, "0");
}

/**
 * Codes for successive uses without waiting: the server accepts the step
 * before and after the current one but never a step at or before the last it
 * accepted, so each use takes the next step of that window.
 */
function authenticator(secret: string): { next(): string; stale(): string } {
  let last = -Infinity;
  const now = (): number => Math.floor(Date.now() / 30_000);
  return {
    next() {
      const current = now();
      const step = Math.max(last + 1, current - 1);
      assert.ok(step <= current + 1, "the window of accepted steps is used up");
      last = step;
      return totp(secret, step);
    },
    stale() {
      return totp(secret, now() - 10);
    },
  };
}

function claims(tokens: Tokens | null): Record<string, unknown> {
  const payload = tokens?.accessToken.split(".")[1] ?? "";
  return JSON.parse(Buffer.from(payload, "base64url").toString()) as Record<string, unknown>;
}

test("the RFC 6238 test vector (SHA-1, T = 59 s)", () => {
  const secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"; // "12345678901234567890"
  assert.equal(totp(secret, 1), "287082");
});

test("TOTP enrolment, log-in with a second factor, recovery codes and step-up", async () => {
  const person = await server.person("client");
  const told: (Tokens | null)[] = [];
  const tokens = person.api.tokens as Tokens;
  const api = new Api({ baseUrl: server.baseUrl, tokens, onTokens: (t) => void told.push(t) });
  assert.deepEqual(claims(api.tokens).amr, ["pwd"]);
  assert.deepEqual(await api.factors(), { factors: [], recovery_codes_remaining: 0 });

  const enrolment = await api.beginTotp("Phone");
  assert.match(enrolment.provisioningUri, /^otpauth:\/\/totp\//);
  assert.ok(enrolment.provisioningUri.includes(`secret=${enrolment.secret}`));
  const [unconfirmed] = (await api.factors()).factors;
  assert.deepEqual(
    { id: unconfirmed?.id, kind: unconfirmed?.kind, label: unconfirmed?.label, confirmed: unconfirmed?.confirmed },
    { id: enrolment.id, kind: "totp", label: "Phone", confirmed: false },
  );

  const phone = authenticator(enrolment.secret);
  const before = api.tokens as Tokens;
  const codes = await api.confirmTotp(enrolment.id, phone.next());
  assert.equal(codes?.length, 10);
  assert.notEqual(api.tokens?.accessToken, before.accessToken);
  assert.equal(api.tokens?.refreshToken, before.refreshToken);
  assert.deepEqual(told, [api.tokens]);
  assert.ok((claims(api.tokens).amr as string[]).includes("mfa"));
  const listed = await api.factors();
  assert.equal(listed.recovery_codes_remaining, 10);
  assert.equal(listed.factors[0]?.confirmed, true);
  // The refresh token in hand stays valid and carries the factor forward.
  await api.refresh();
  assert.ok((claims(api.tokens).amr as string[]).includes("mfa"));
  await api.logout();

  // A log-in now asks for the second factor.
  const fresh = new Api({ baseUrl: server.baseUrl });
  const refused = await problem(fresh.login(person.email, person.password), 401, "mfa_required");
  const challenge = mfaChallenge(refused);
  assert.ok(challenge !== null);
  assert.deepEqual([...challenge.methods].sort(), ["recovery_code", "totp"]);
  assert.ok(challenge.expiresIn > 0);
  assert.equal(fresh.tokens, null);
  const wrong = await problem(fresh.login(person.email, "a wrong password!"), 401, "invalid_credentials");
  assert.equal(mfaChallenge(wrong), null);

  const recoveryCode = codes?.[0] ?? "";
  const byCode = await fresh.completeMfa(challenge.mfaToken, { method: "recovery_code", code: recoveryCode });
  assert.deepEqual(fresh.tokens, byCode);
  assert.deepEqual(claims(byCode).amr, ["pwd", "otp", "mfa"]);
  assert.equal((await fresh.me()).id, person.id);
  assert.equal((await fresh.factors()).recovery_codes_remaining, 9);
  // The mfa_token is spent (refused before any factor is read).
  const spent = new Api({ baseUrl: server.baseUrl }).completeMfa(challenge.mfaToken, {
    method: "recovery_code",
    code: codes?.[2] ?? "",
  });
  await problem(spent, 401, "token_invalid");

  // A recovery code is single use; the failure leaves the mfa_token for a right factor.
  const second = new Api({ baseUrl: server.baseUrl });
  const again = mfaChallenge(await second.login(person.email, person.password).catch((e: unknown) => e));
  assert.ok(again !== null);
  const reused = second.completeMfa(again.mfaToken, { method: "recovery_code", code: recoveryCode });
  await problem(reused, 401, "invalid_mfa");
  assert.equal(second.tokens, null);
  const byTotp = await second.completeMfa(again.mfaToken, { method: "totp", code: phone.next() });
  assert.deepEqual(claims(byTotp).amr, ["pwd", "otp", "mfa"]);

  // Step-up: a wrong code is refused without a refresh; a right one answers a new access token.
  const seen: (Tokens | null)[] = [];
  const stepping = new Api({ baseUrl: server.baseUrl, tokens: byTotp, onTokens: (t) => void seen.push(t) });
  await problem(stepping.stepUp({ method: "totp", code: phone.stale() }), 401, "invalid_mfa");
  assert.deepEqual(seen, []);
  assert.equal(stepping.tokens, byTotp);
  const stepped = await stepping.stepUp({ method: "totp", code: phone.next() });
  assert.notEqual(stepped.accessToken, byTotp.accessToken);
  assert.equal(stepped.refreshToken, byTotp.refreshToken);
  assert.deepEqual(seen, [stepped]);
  const steppedClaims = claims(stepped);
  assert.ok((steppedClaims.amr as string[]).includes("mfa"));
  assert.equal(typeof steppedClaims.auth_time, "number");
  assert.ok((steppedClaims.auth_time as number) >= (claims(byTotp).auth_time as number));

  // A guarded act passes with it: new recovery codes void the earlier ones.
  const renewed = await stepping.newRecoveryCodes();
  assert.equal(renewed.length, 10);
  assert.ok(!renewed.includes(codes?.[1] ?? ""));
  assert.equal((await stepping.factors()).recovery_codes_remaining, 10);
  const third = new Api({ baseUrl: server.baseUrl });
  const once = mfaChallenge(await third.login(person.email, person.password).catch((e: unknown) => e));
  assert.ok(once !== null);
  const voided = third.completeMfa(once.mfaToken, { method: "recovery_code", code: codes?.[1] ?? "" });
  await problem(voided, 401, "invalid_mfa");
  await third.completeMfa(once.mfaToken, { method: "recovery_code", code: renewed[0] ?? "" });
  assert.equal((await third.me()).id, person.id);
});

test("the password alone steps up an account without a factor; a wrong one is refused", async () => {
  const person = await server.person("client");
  const before = person.api.tokens as Tokens;
  await problem(person.api.stepUp({ method: "password", password: `${person.password}!` }), 401, "invalid_mfa");
  assert.equal(person.api.tokens, before);
  const stepped = await person.api.stepUp({ method: "password", password: person.password });
  assert.equal(stepped.refreshToken, before.refreshToken);
  assert.deepEqual(claims(stepped).amr, ["pwd"]);
  assert.equal((await person.api.me()).id, person.id);
});

test("log-ins: listed with the current one marked, ended one by one; a password change ends the others", async () => {
  const person = await server.person("client");
  const other = new Api({ baseUrl: server.baseUrl });
  await other.login(person.email, person.password);
  const third = new Api({ baseUrl: server.baseUrl });
  await third.login(person.email, person.password);

  const logins = await person.api.logins();
  assert.equal(logins.length, 3);
  assert.equal(logins.filter((l) => l.current).length, 1);
  for (const login of logins) {
    assert.equal(typeof login.device, "string");
    assert.ok(!Number.isNaN(Date.parse(login.created_at)) && !Number.isNaN(Date.parse(login.last_used_at)));
  }
  const mine = logins.find((l) => l.current)?.id ?? "";
  const othersCurrent = (await other.logins()).find((l) => l.current)?.id ?? "";
  assert.notEqual(othersCurrent, mine);

  await person.api.endLogin(othersCurrent);
  await problem(other.me(), 401, "token_invalid");
  await problem(person.api.endLogin(othersCurrent), 404, "not_found");
  assert.equal((await person.api.logins()).length, 2);

  const next = `${person.password} changed`;
  await problem(person.api.changePassword(`${person.password}?`, next), 401, "invalid_credentials");
  await problem(person.api.changePassword(person.password, "short"), 422, "weak_password");
  await person.api.changePassword(person.password, next);
  await problem(third.me(), 401, "token_invalid");
  assert.deepEqual(
    (await person.api.logins()).map((l) => l.id),
    [mine],
  );
  await problem(new Api({ baseUrl: server.baseUrl }).login(person.email, person.password), 401, "invalid_credentials");
  await new Api({ baseUrl: server.baseUrl }).login(person.email, next);
});
