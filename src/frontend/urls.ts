// Credentials in a URL (ADD https://user:token@host/file, a git URL with a token) must not reach
// the image history, the progress output, error messages or kiln's records: BuildKit's
// CVE-2023-26054. They are redacted as BuildKit redacts them (the password becomes "xxxxx"); the
// URL itself, credentials included, is still what is fetched.

/** The URL with its password (or a lone user token) replaced by "xxxxx"; other text unchanged. */
export function redactCredentials(text: string): string {
  // scheme://user:password@host  or  scheme://token@host (a token alone is as secret as a password).
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)([^/@\s:]+)(?::([^/@\s]*))?@/gi, (_m, scheme: string, user: string, password: string | undefined) =>
    password === undefined ? `${scheme}xxxxx@` : `${scheme}${user}:xxxxx@`,
  );
}
