// A mistake on the command line: the message names the flag and the value; the command prints it
// with its usage text and exits 1. An empty message means --help was asked for (exit 0).
export class UsageError extends Error {
  override name = 'UsageError';
}
