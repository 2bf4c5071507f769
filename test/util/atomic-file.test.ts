// util/atomic-file.ts: whole-file replacement that concurrent writers in one process can share.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { replaceFile } from '../../src/util/atomic-file.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-atomic-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('replaceFile', () => {
  it('lets many writers in one process replace one file at once: each succeeds, one whole content wins, no temporary is left', async () => {
    const file = path.join(dir, 'sub', 'record.json');
    const contents = Array.from({ length: 20 }, (_, i) => JSON.stringify({ writer: i, pad: 'x'.repeat(1000 * i) }));
    await Promise.all(contents.map((c) => replaceFile(file, c, { mkdir: true })));
    expect(contents).toContain(fs.readFileSync(file, 'utf8'));
    expect(fs.readdirSync(path.dirname(file))).toEqual(['record.json']);
  });

  it('leaves the old content and no temporary when the rename cannot happen', async () => {
    const file = path.join(dir, 'kept.txt');
    fs.writeFileSync(file, 'old');
    const target = path.join(dir, 'a-directory');
    fs.mkdirSync(path.join(target, 'child'), { recursive: true });
    await expect(replaceFile(target, 'new')).rejects.toThrow();
    expect(fs.readFileSync(file, 'utf8')).toBe('old');
    expect(fs.readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });
});
