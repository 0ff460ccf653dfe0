/** The page's two live regions: polite status lines and assertive errors. */

export interface Announcer {
  status(text: string): void;
  error(text: string): void;
  clear(): void;
}

export function announcer(statusRegion: HTMLElement, alertRegion: HTMLElement): Announcer {
  return {
    status(text) {
      statusRegion.textContent = text;
    },
    error(text) {
      alertRegion.textContent = text;
      alertRegion.hidden = text === "";
    },
    clear() {
      alertRegion.textContent = "";
      alertRegion.hidden = true;
    },
  };
}

/** A readable line for anything thrown by the client: its `code` when it has one. */
export function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as Error & { code?: unknown }).code;
    return typeof code === "string" ? `${error.message} (${code})` : error.message;
  }
  return String(error);
}
