// --chown and --chmod values.
//
// --chown follows BuildKit exactly, in its two halves:
//  - the frontend (llb.WithUser) splits the value at the first ':' into a user part and, when there
//    is a ':', a group part. Each part is a number when Go's strconv.ParseInt(s, 10, 32) accepts it
//    ("+1", "0050"; not past 2147483647) or when it is "root" (0); otherwise a name. An *empty*
//    name is sent as id 0: ":staff" is 0:staff, "kiln:" is kiln:0, ":" is 0:0.
//  - the file op (solver/llbsolver/file readUser) starts from 0:0; a numeric user sets uid and gid
//    to that number; a user name takes uid and primary gid of its first /etc/passwd entry; a group
//    (number, or the gid of the first /etc/group entry of that name) then replaces the gid. A name
//    the files do not have (or a missing file) is *not* an error: the ids are left as they were
//    (an unknown user is 0:0, an unknown group keeps the user's gid).
// Names are looked up in the *destination* rootfs, before the copy, never on the host. An empty
// value (e.g. `--chown=${UNSET}`) means no --chown at all, as the frontend skips it.

import { readDb } from '../fsutil/rootfs-users.js';

export interface Owner {
  uid: number;
  gid: number;
}

/** Go's strconv.ParseInt(s, 10, 32): optional sign, decimal digits, signed 32-bit range. */
export function parseChownId(s: string): number | undefined {
  if (s === 'root') return 0;
  if (!/^[+-]?[0-9]+$/.test(s)) return undefined;
  const n = Number(s);
  return n >= -0x80000000 && n <= 0x7fffffff ? n : undefined;
}

type Part = { id: number } | { name: string };

function part(s: string): Part {
  const id = parseChownId(s);
  if (id !== undefined) return { id };
  return s === '' ? { id: 0 } : { name: s };
}

/** runc's user.ParsePasswdFilter / ParseGroupFilter: fields split at ':', numbers by Atoi (0 when not one). */
function atoi(s: string | undefined): number {
  return s !== undefined && /^[+-]?[0-9]+$/.test(s) ? Number(s) : 0;
}

function dbLines(text: string | undefined, skipComments: boolean): string[][] {
  const out: string[][] = [];
  for (const raw of (text ?? '').split('\n')) {
    const line = raw.trim();
    if (line === '' || (skipComments && line.startsWith('#'))) continue;
    out.push(line.split(':'));
  }
  return out;
}

/** The uid and gid a --chown value gives, read against the rootfs at `destRoot`. */
export async function resolveChown(destRoot: string, spec: string): Promise<Owner> {
  const colon = spec.indexOf(':');
  const user = part(colon === -1 ? spec : spec.slice(0, colon));
  const group = colon === -1 ? undefined : part(spec.slice(colon + 1));
  const owner: Owner = { uid: 0, gid: 0 };
  if ('id' in user) {
    owner.uid = owner.gid = checkId(user.id, spec);
  } else {
    const entry = dbLines(await readDb(destRoot, '/etc/passwd'), false).find((f) => f[0] === user.name);
    if (entry) {
      owner.uid = atoi(entry[2]);
      owner.gid = atoi(entry[3]);
    }
  }
  if (group !== undefined) {
    if ('id' in group) {
      owner.gid = checkId(group.id, spec);
    } else {
      const entry = dbLines(await readDb(destRoot, '/etc/group'), true).find((f) => f[0] === group.name);
      if (entry) owner.gid = atoi(entry[2]);
    }
  }
  return owner;
}

/**
 * BuildKit passes a negative id on as uint32, so -1 becomes (uid_t)-1, the kernel's "do not change":
 * the result depends on the daemon. kiln refuses it rather than guess.
 */
function checkId(id: number, spec: string): number {
  if (id < 0) throw new Error(`invalid --chown=${spec}: negative id ${id}`);
  return id;
}

/** --chmod: octal, or symbolic applied to each file's own mode (see fsutil/chmod). */
export { parseChmod, type ChmodFn } from '../fsutil/chmod.js';
