// Registry errors always say which registry and repository they came from.

export class RegistryError extends Error {
  constructor(
    readonly registry: string,
    readonly repository: string,
    message: string,
    readonly status?: number,
    /** Distribution error code (`MANIFEST_UNKNOWN`, `DENIED`, ...), when the registry sent one. */
    readonly code?: string,
    options?: { cause?: unknown },
  ) {
    super(`registry ${registry} repository ${repository}: ${message}`, options);
    this.name = 'RegistryError';
  }
}

/** Summarises a registry's JSON error body (`{"errors":[{"code","message"}]}`) or plain text. */
export function describeErrorBody(text: string): { code?: string; text: string } {
  try {
    const body = JSON.parse(text) as { errors?: { code?: string; message?: string; detail?: unknown }[] };
    if (Array.isArray(body.errors) && body.errors.length) {
      const first = body.errors[0]!;
      return { code: first.code, text: body.errors.map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ') };
    }
  } catch {
    // not JSON: fall through
  }
  return { text: text.slice(0, 300).trim() };
}
