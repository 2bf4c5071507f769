// An OCI layout that cannot be imported, naming where it came from (a path, a flag).

export class ImportError extends Error {
  constructor(
    readonly source: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${source}: ${message}`, options);
    this.name = 'ImportError';
  }
}
