/** A static server for the built client, sending the Content Security Policy the Confide server sends (app/webclient). */
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize, resolve } from "node:path";

const STATIC = resolve(process.env["CONFIDE_WEB_STATIC"] ?? join(import.meta.dirname, "..", "..", "..", "app", "webclient", "static"));
const TYPES: Record<string, string> = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css" };

export function csp(host: string): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob: mediastream:",
    `connect-src 'self' ws://${host}`,
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'none'",
  ].join("; ");
}

export function serveStatic(): Promise<{ origin: string; close(): void }> {
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://localhost");
    const path = url.pathname.replace(/^\/app\//, "/");
    const name = path === "/" ? "index.html" : normalize(path).replace(/^\/+/, "");
    const type = TYPES[extname(name)];
    if (name.includes("..") || type === undefined) {
      response.writeHead(404).end();
      return;
    }
    try {
      const body = readFileSync(join(STATIC, name));
      response.writeHead(200, { "content-type": type, "content-security-policy": csp(request.headers.host ?? "") });
      response.end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  return new Promise((done) => {
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      done({ origin: `http://127.0.0.1:${port}`, close: () => server.close() });
    });
  });
}

