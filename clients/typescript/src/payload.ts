/**
 * The plaintext inside a room's MLS application message: one kind byte, then
 * the body.
 *
 * | kind | body |
 * |---|---|
 * | `0x01` text | UTF-8 text |
 * | `0x02` bytes | opaque bytes, for every member |
 * | `0x03` signal | opaque bytes for one device (WebRTC signalling, sent as a directed message) |
 */

export const TEXT = 0x01;
export const BYTES = 0x02;
export const SIGNAL = 0x03;

export type Payload =
  | { readonly kind: "text"; readonly text: string }
  | { readonly kind: "bytes"; readonly bytes: Uint8Array }
  | { readonly kind: "signal"; readonly bytes: Uint8Array };

export type PayloadErrorCode = "empty" | "unknown_kind" | "invalid_utf8";

/** Bytes that are not a payload. */
export class PayloadError extends Error {
  readonly code: PayloadErrorCode;

  constructor(code: PayloadErrorCode, message: string) {
    super(message);
    this.name = "PayloadError";
    this.code = code;
  }
}

const encoder = new TextEncoder();
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function tagged(kind: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + body.length);
  out[0] = kind;
  out.set(body, 1);
  return out;
}

export function encodePayload(payload: Payload): Uint8Array {
  switch (payload.kind) {
    case "text":
      // Lone surrogates have no UTF-8 form: refuse them rather than send U+FFFD.
      if (LONE_SURROGATE.test(payload.text)) throw new PayloadError("invalid_utf8", "the text has a lone surrogate");
      return tagged(TEXT, encoder.encode(payload.text));
    case "bytes":
      return tagged(BYTES, payload.bytes);
    case "signal":
      return tagged(SIGNAL, payload.bytes);
  }
}

export function decodePayload(bytes: Uint8Array): Payload {
  if (bytes.length === 0) throw new PayloadError("empty", "the payload is empty");
  const body = bytes.slice(1);
  switch (bytes[0]) {
    case TEXT: {
      let text: string;
      try {
        text = decoder.decode(body);
      } catch {
        throw new PayloadError("invalid_utf8", "the text is not valid UTF-8");
      }
      return { kind: "text", text };
    }
    case BYTES:
      return { kind: "bytes", bytes: body };
    case SIGNAL:
      return { kind: "signal", bytes: body };
    default:
      throw new PayloadError("unknown_kind", `unknown payload kind ${bytes[0]}`);
  }
}
