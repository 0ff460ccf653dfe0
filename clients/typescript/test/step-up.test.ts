import assert from "node:assert/strict";
import { test } from "node:test";

import { Api, ProblemError, type Tokens, mfaChallenge, stepUpRequired } from "../src/api.js";

interface Seen {
  method: string;
  path: string;
  authorization: string | null;
  body: unknown;
}

/** A fetch that answers from `reply` and records each request. */
function fakeFetch(reply: (seen: Seen) => Response): { fetch: typeof fetch; seen: Seen[] } {
  const seen: Seen[] = [];
  const fake: typeof fetch = async (input, init) => {
    const headers = new Headers(init?.headers);
    const raw = typeof init?.body === "string" ? init.body : null;
    const request: Seen = {
      method: init?.method ?? "GET",
      path: new URL(String(input)).pathname,
      authorization: headers.get("authorization"),
      body: raw !== null && headers.get("content-type") === "application/json" ? JSON.parse(raw) : raw,
    };
    seen.push(request);
    return reply(request);
  };
  return { fetch: fake, seen };
}

function problem(status: number, body: Record<string, unknown>): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/problem+json" } });
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

const STEP_UP_REQUIRED = { code: "step_up_required", title: "Step-up authentication required", max_age: 600 };

test("step_up_required is thrown as it is: no refresh, no retry, even past expiresAt", async () => {
  for (const expiresAt of [Date.now() + 60_000, Date.now() - 1000]) {
    const { fetch, seen } = fakeFetch(() => problem(401, STEP_UP_REQUIRED));
    const tokens: Tokens = { accessToken: "access", refreshToken: "refresh", expiresAt };
    const told: (Tokens | null)[] = [];
    const api = new Api({ baseUrl: "https://confide.test", fetch, tokens, onTokens: (t) => void told.push(t) });
    const error = await api.newRecoveryCodes().catch((e: unknown) => e);
    assert.ok(error instanceof ProblemError, String(error));
    assert.equal(error.code, "step_up_required");
    assert.deepEqual(stepUpRequired(error), { maxAge: 600 });
    assert.deepEqual(
      seen.map((s) => `${s.method} ${s.path}`),
      ["POST /v1/me/recovery-codes"],
    );
    assert.deepEqual(told, []);
    assert.equal(api.tokens, tokens);
  }
});

test("an expired access token is still refreshed (the contrast to step_up_required)", async () => {
  let calls = 0;
  const { fetch, seen } = fakeFetch((s) => {
    if (s.path === "/v1/auth/refresh") {
      return json({ access_token: "a2", token_type: "bearer", expires_in: 900, refresh_token: "r2" });
    }
    calls += 1;
    return calls === 1 ? problem(401, { code: "token_expired" }) : json({ recovery_codes: ["c"] });
  });
  const tokens: Tokens = { accessToken: "a1", refreshToken: "r1", expiresAt: 0 };
  const api = new Api({ baseUrl: "https://confide.test", fetch, tokens });
  assert.deepEqual(await api.newRecoveryCodes(), ["c"]);
  assert.deepEqual(
    seen.map((s) => s.path),
    ["/v1/me/recovery-codes", "/v1/auth/refresh", "/v1/me/recovery-codes"],
  );
});

test("stepUp sends the proof, replaces the access token, keeps the refresh token and tells onTokens", async () => {
  const { fetch, seen } = fakeFetch(() => json({ access_token: "stepped", token_type: "bearer", expires_in: 900 }));
  const told: (Tokens | null)[] = [];
  const api = new Api({
    baseUrl: "https://confide.test",
    fetch,
    tokens: { accessToken: "old", refreshToken: "keep", expiresAt: Date.now() + 1000 },
    onTokens: (t) => void told.push(t),
  });
  const before = Date.now();
  const tokens = await api.stepUp({ method: "password", password: "hunter2 hunter2" });
  assert.equal(tokens.accessToken, "stepped");
  assert.equal(tokens.refreshToken, "keep");
  assert.ok(tokens.expiresAt >= before + 900_000);
  assert.deepEqual(told, [tokens]);
  assert.deepEqual(api.tokens, tokens);
  await api.stepUp({ method: "webauthn", credential: { id: "x", type: "public-key" }, challengeToken: "ch" });
  await api.stepUp({ method: "recovery_code", code: "abcd-efgh-ijkm-nopq" });
  assert.deepEqual(
    seen.map((s) => [s.path, s.authorization, s.body]),
    [
      ["/v1/auth/step-up", "Bearer old", { method: "password", password: "hunter2 hunter2" }],
      [
        "/v1/auth/step-up",
        "Bearer stepped",
        { method: "webauthn", credential: { id: "x", type: "public-key" }, challenge_token: "ch" },
      ],
      ["/v1/auth/step-up", "Bearer stepped", { method: "recovery_code", code: "abcd-efgh-ijkm-nopq" }],
    ],
  );
});

test("a refused step-up changes no tokens", async () => {
  const { fetch } = fakeFetch(() => problem(401, { code: "invalid_mfa" }));
  const tokens: Tokens = { accessToken: "old", refreshToken: "keep", expiresAt: Date.now() + 1000 };
  const told: (Tokens | null)[] = [];
  const api = new Api({ baseUrl: "https://confide.test", fetch, tokens, onTokens: (t) => void told.push(t) });
  await assert.rejects(
    api.stepUp({ method: "totp", code: "123456" }),
    (e: unknown) => e instanceof ProblemError && e.code === "invalid_mfa",
  );
  assert.equal(api.tokens, tokens);
  assert.deepEqual(told, []);
});

test("mfaChallenge reads only a well-formed mfa_required problem", () => {
  const body = { code: "mfa_required", mfa_token: "t", methods: ["totp", "recovery_code"], expires_in: 300 };
  assert.deepEqual(mfaChallenge(new ProblemError(401, body)), {
    mfaToken: "t",
    methods: ["totp", "recovery_code"],
    expiresIn: 300,
  });
  assert.equal(mfaChallenge(new ProblemError(401, { ...body, code: "invalid_credentials" })), null);
  assert.equal(mfaChallenge(new ProblemError(403, body)), null);
  assert.equal(mfaChallenge(new ProblemError(401, { ...body, mfa_token: 7 })), null);
  assert.equal(mfaChallenge(new ProblemError(401, { ...body, methods: [1] })), null);
  assert.equal(mfaChallenge(new ProblemError(401, { ...body, expires_in: "300" })), null);
  assert.equal(mfaChallenge(new Error("mfa_required")), null);
  assert.equal(mfaChallenge(undefined), null);
  assert.equal(stepUpRequired(new ProblemError(401, body)), null);
});

test("completeMfa posts the mfa_token with the factor, unauthenticated, and keeps the pair", async () => {
  const pair = { access_token: "a", token_type: "bearer", expires_in: 900, refresh_token: "r" };
  const { fetch, seen } = fakeFetch(() => json(pair));
  const api = new Api({ baseUrl: "https://confide.test", fetch });
  const tokens = await api.completeMfa("mfa", { method: "totp", code: "123456" });
  assert.equal(tokens.accessToken, "a");
  assert.equal(tokens.refreshToken, "r");
  assert.deepEqual(api.tokens, tokens);
  assert.deepEqual(seen, [
    {
      method: "POST",
      path: "/v1/auth/mfa",
      authorization: null,
      body: { mfa_token: "mfa", method: "totp", code: "123456" },
    },
  ]);
});
