/**
 * A real Confide server for the SDK's integration tests: `confide serve` from
 * the repository's `.venv` (which `python3 dev.py test` builds before it runs
 * these tests), on SQLite in a temporary directory, on a free port, with
 * cheap password hashing. One per test file; `stop()` ends it.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { Api } from "../../src/api.js";

// dist/test/support/ -> the repository's root.
const ROOT = fileURLToPath(new URL("../../../../../", import.meta.url));
const CONFIDE = join(ROOT, ".venv", "bin", "confide");
const START_TIMEOUT_MS = 30_000;

export const PASSWORD = "correct horse battery staple";

export interface Person {
  id: string;
  email: string;
  password: string;
  api: Api;
}

export interface TestServer {
  baseUrl: string;
  admin: Person;
  /** A new account of this role, logged in. */
  person(role: "client" | "counselor"): Promise<Person>;
  /** Publishes `informed_consent`, `telehealth` and `group_agreement` (once), so that clients can get room tokens. */
  publishConsent(): Promise<void>;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once("exit", (code) => resolve(code));
  });
}

async function ready(baseUrl: string, child: ChildProcess): Promise<boolean> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) return false;
    try {
      if ((await fetch(`${baseUrl}/readyz`)).status === 200) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

function run(env: NodeJS.ProcessEnv, args: string[], stdin: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(CONFIDE, args, { env, stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code, output }));
    child.stdin.end(stdin);
  });
}

let counter = 0;

function unique(prefix: string): { email: string; password: string; name: string } {
  counter += 1;
  const tag = `${Date.now().toString(36)}${counter}${Math.random().toString(36).slice(2, 8)}`;
  return { email: `${prefix}-${tag}@example.org`, password: `${PASSWORD} ${tag}`, name: `${prefix} ${tag}` };
}

export async function startServer(extraEnv: Readonly<Record<string, string>> = {}): Promise<TestServer> {
  if (!existsSync(CONFIDE)) {
    throw new Error(
      `${CONFIDE} is missing: the SDK's integration tests run a real Confide server from the ` +
        "repository's virtual environment; build it with `python3 dev.py test -k nothing` at the repository root",
    );
  }
  const dataDir = await mkdtemp(join(tmpdir(), "confide-sdk-"));
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CONFIDE_")));
  Object.assign(env, {
    CONFIDE_DATA_DIR: dataDir,
    CONFIDE_PASSWORD_MEMORY_KIB: "8",
    CONFIDE_PASSWORD_TIME_COST: "1",
    CONFIDE_PASSWORD_PARALLELISM: "1",
    ...extraEnv,
  });

  let child: ChildProcess | null = null;
  let baseUrl = "";
  for (let attempt = 1; attempt <= 3 && child === null; attempt++) {
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    const started = spawn(CONFIDE, ["serve", "--host", "127.0.0.1", "--port", String(port)], {
      env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    started.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    if (await ready(baseUrl, started)) {
      child = started;
      started.stderr?.removeAllListeners("data");
      started.stderr?.resume();
    } else {
      started.kill("SIGKILL");
      await exited(started);
      if (attempt === 3 || !stderr.toLowerCase().includes("address already in use")) {
        await rm(dataDir, { recursive: true, force: true });
        throw new Error(`confide serve did not become ready:\n${stderr}`);
      }
    }
  }
  const server = child as ChildProcess;

  const stop = async (): Promise<void> => {
    if (server.exitCode === null && server.signalCode === null) {
      server.kill("SIGTERM");
      const timer = setTimeout(() => server.kill("SIGKILL"), 15_000);
      await exited(server);
      clearTimeout(timer);
    }
    await rm(dataDir, { recursive: true, force: true });
  };

  try {
    const adminUser = unique("admin");
    const created = await run(env, ["admin", "create", "--email", adminUser.email, "--password-stdin"], `${adminUser.password}\n`);
    if (created.code !== 0) throw new Error(`confide admin create failed:\n${created.output}`);
    const adminApi = new Api({ baseUrl });
    await adminApi.login(adminUser.email, adminUser.password);
    const admin: Person = { id: (await adminApi.me()).id, email: adminUser.email, password: adminUser.password, api: adminApi };

    const asAdmin = async (path: string, body: unknown): Promise<Record<string, unknown>> => {
      const response = await fetch(`${baseUrl}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${adminApi.tokens?.accessToken ?? ""}` },
        body: JSON.stringify(body),
      });
      if (response.status !== 201) throw new Error(`${path}: ${response.status} ${await response.text()}`);
      return (await response.json()) as Record<string, unknown>;
    };

    let published = false;
    return {
      baseUrl,
      admin,
      async person(role) {
        const user = unique(role);
        if (role === "client") {
          await new Api({ baseUrl }).register(user.email, user.password, user.name);
        } else {
          await asAdmin("/v1/admin/accounts", { email: user.email, password: user.password, display_name: user.name, role });
        }
        const api = new Api({ baseUrl });
        await api.login(user.email, user.password);
        return { id: (await api.me()).id, email: user.email, password: user.password, api };
      },
      async publishConsent() {
        if (published) return;
        for (const kind of ["informed_consent", "telehealth", "group_agreement"]) {
          await asAdmin("/v1/consent-documents", { kind, locale: "en", title: `The ${kind} document`, body: `What ${kind} means.` });
        }
        published = true;
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** The Python reference's safety number of two accounts (app/keys/safety.py). */
export async function pythonSafetyNumber(a: Uint8Array, aId: string, b: Uint8Array, bId: string): Promise<string> {
  const python = join(ROOT, ".venv", "bin", "python");
  const script =
    "import sys; from app.keys.safety import safety_number; " +
    "print(safety_number(bytes.fromhex(sys.argv[1]), sys.argv[2], bytes.fromhex(sys.argv[3]), sys.argv[4]))";
  const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");
  return new Promise((resolve, reject) => {
    const child = spawn(python, ["-c", script, hex(a), aId, hex(b), bId], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(err))));
  });
}
