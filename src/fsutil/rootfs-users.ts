// Users and groups of a rootfs, from its own /etc/passwd and /etc/group: what RUN's USER and COPY's
// --chown resolve (a leaf, so the executor and the file operations both use it without one
// importing the other).
//
// The files are read from inside the rootfs through resolveInRoot, never from the host: an image whose
// /etc/passwd is a symlink to ../../../etc/passwd must read its own (missing) file, not ours. The
// semantics follow what Docker and BuildKit do (runc's GetExecUser):
//   - "" means root (uid 0, gid 0);
//   - a name must exist in passwd; a number need not (gid 0 then, Docker allows `USER 1234`);
//   - "user:group": the group is a name from /etc/group or a number; an explicit group replaces the
//     supplementary groups (they only apply in the implicit form);
//   - implicit form: every /etc/group entry that lists the user's name is a supplementary group;
//   - HOME is the passwd entry's home, or "/" when there is none.

import * as fsp from 'node:fs/promises';
import { resolveInRoot } from './rootpath.js';

export interface ResolvedUser {
  uid: number;
  gid: number;
  /** Supplementary groups (setgroups), from /etc/group membership. */
  additionalGids: number[];
  home: string;
  /** The passwd name when the user has an entry. */
  name?: string;
}

export interface ResolvedGroup {
  gid: number;
  name?: string;
}

export class UserLookupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserLookupError';
  }
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/** An image's passwd is untrusted input: refuse absurd sizes instead of reading them into memory. */
const MAX_DB_BYTES = 16 * 1024 * 1024;
/** Linux ids are 32-bit; (uid_t)-1 is "no change" to the kernel, so it is not a valid id. */
const MAX_ID = 0xfffffffe;

function parseId(s: string): number | undefined {
  if (!/^[0-9]+$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) && n <= MAX_ID ? n : undefined;
}

/** The text of /etc/passwd or /etc/group inside `rootfs`; undefined when it is absent. */
export async function readDb(rootfs: string, file: string): Promise<string | undefined> {
  let host: string;
  try {
    host = await resolveInRoot(rootfs, file);
  } catch (err) {
    throw new UserLookupError(`cannot read ${file} in the image: ${(err as Error).message}`);
  }
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(host, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new UserLookupError(`cannot read ${file} in the image: ${(err as Error).message}`);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) return undefined; // a directory or a device where passwd should be: treat as absent
    if (st.size > MAX_DB_BYTES) throw new UserLookupError(`${file} in the image is too large (${st.size} bytes)`);
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

function parsePasswd(text: string | undefined): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of (text ?? '').split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 4) continue;
    const uid = parseId(f[2]!.trim());
    const gid = parseId(f[3]!.trim());
    if (uid === undefined || gid === undefined) continue;
    out.push({ name: f[0]!, uid, gid, home: f[5] ?? '' });
  }
  return out;
}

function parseGroup(text: string | undefined): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of (text ?? '').split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 3) continue;
    const gid = parseId(f[2]!.trim());
    if (gid === undefined) continue;
    const members = (f[3] ?? '')
      .split(',')
      .map((m) => m.trim())
      .filter((m) => m !== '');
    out.push({ name: f[0]!, gid, members });
  }
  return out;
}

/** Resolves a group name or number against the image's /etc/group. A number need not exist there. */
export async function lookupGroup(rootfs: string, spec: string): Promise<ResolvedGroup> {
  if (spec === '') throw new UserLookupError('empty group name');
  const groups = parseGroup(await readDb(rootfs, '/etc/group'));
  const byName = groups.find((g) => g.name === spec);
  if (byName) return { gid: byName.gid, name: byName.name };
  const gid = parseId(spec);
  if (gid !== undefined) {
    const byGid = groups.find((g) => g.gid === gid);
    return byGid ? { gid, name: byGid.name } : { gid };
  }
  throw new UserLookupError(`unable to find group ${spec}: no matching entries in the image's /etc/group`);
}

/**
 * Resolves a USER value ("name", "uid", "name:group", "uid:gid", "" for root) against the image's
 * /etc/passwd and /etc/group inside `rootfs`.
 */
export async function lookupUser(rootfs: string, spec: string): Promise<ResolvedUser> {
  const colon = spec.indexOf(':');
  const userPart = colon === -1 ? spec : spec.slice(0, colon);
  const groupPart = colon === -1 ? undefined : spec.slice(colon + 1);
  if (groupPart === '') throw new UserLookupError(`invalid user ${JSON.stringify(spec)}: empty group after ':'`);

  const passwd = parsePasswd(await readDb(rootfs, '/etc/passwd'));
  let entry: PasswdEntry | undefined;
  let uid: number;
  if (userPart === '') {
    // "" (and ":group") mean root, as Docker does.
    uid = 0;
    entry = passwd.find((p) => p.uid === 0);
  } else {
    // A name wins over a number: an entry literally named "1000" is looked up by name first.
    entry = passwd.find((p) => p.name === userPart);
    if (entry) {
      uid = entry.uid;
    } else {
      const n = parseId(userPart);
      if (n === undefined) throw new UserLookupError(`unable to find user ${userPart}: no matching entries in the image's /etc/passwd`);
      uid = n;
      entry = passwd.find((p) => p.uid === n);
    }
  }

  let gid = entry?.gid ?? 0;
  const additionalGids: number[] = [];
  if (groupPart !== undefined) {
    gid = (await lookupGroup(rootfs, groupPart)).gid;
  } else if (entry) {
    const groups = parseGroup(await readDb(rootfs, '/etc/group'));
    const seen = new Set<number>();
    for (const g of groups) {
      if (g.members.includes(entry.name) && !seen.has(g.gid)) {
        seen.add(g.gid);
        additionalGids.push(g.gid);
      }
    }
  }
  return { uid, gid, additionalGids, home: entry?.home || '/', ...(entry ? { name: entry.name } : {}) };
}
