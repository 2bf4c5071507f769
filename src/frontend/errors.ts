// Errors the frontend raises: always with the Dockerfile name and the 1-based line, so the user can
// jump to the offending instruction ("Dockerfile:3: unknown instruction: FOOBAR").

export class DockerfileError extends Error {
  readonly file: string;
  readonly line: number;
  /** The message without the "file:line: " prefix. */
  readonly detail: string;

  constructor(file: string, line: number, detail: string) {
    super(line > 0 ? `${file}:${line}: ${detail}` : `${file}: ${detail}`);
    this.name = 'DockerfileError';
    this.file = file;
    this.line = line;
    this.detail = detail;
  }
}

/** An error found while parsing one instruction; converted to a DockerfileError by the caller that knows the line. */
export class InstructionError extends Error {}

export function fail(msg: string): never {
  throw new InstructionError(msg);
}
