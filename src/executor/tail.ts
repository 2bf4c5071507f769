// A bounded tail of a stream: the caller wants the last lines of output for an error message, and a
// step that prints gigabytes must not grow kiln's memory.

export class TailBuffer {
  private chunks: Buffer[] = [];
  private size = 0;

  constructor(private readonly maxBytes: number) {}

  push(chunk: Buffer): void {
    if (this.maxBytes <= 0) return;
    if (chunk.length >= this.maxBytes) {
      this.chunks = [Buffer.from(chunk.subarray(chunk.length - this.maxBytes))];
      this.size = this.maxBytes;
      return;
    }
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size - this.chunks[0]!.length >= this.maxBytes) {
      this.size -= this.chunks.shift()!.length;
    }
    // Keep the invariant size <= maxBytes by trimming the head chunk in place.
    if (this.size > this.maxBytes) {
      const excess = this.size - this.maxBytes;
      this.chunks[0] = this.chunks[0]!.subarray(excess);
      this.size -= excess;
    }
  }

  /** The kept bytes as text. A cut multi-byte character at the start decodes as U+FFFD. */
  toString(): string {
    return Buffer.concat(this.chunks, this.size).toString('utf8');
  }
}
