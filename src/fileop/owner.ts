// --chown and --chmod values.
//
// --chown follows BuildKit's file op (readUser): a user *name* takes the uid and primary gid of its
// /etc/passwd entry, a numeric user takes gid = uid, and a group part (name from /etc/group, or a
// number) replaces the gid. Names are looked up in the *destination* rootfs, never on the host.

import { lookupGroup, lookupUser } from '../fsutil/rootfs-users.js';

export interface Owner {
  uid: number;
  gid: number;
}

const MAX_ID = 0xfffffffe;

function parseId(s: string): number | undefined {
  if (!/^[0-9]+$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) && n <= MAX_ID ? n : undefined;
}

export async function resolveChown(destRoot: string, spec: string): Promise<Owner> {
  const colon = spec.indexOf(':');
  const userPart = colon === -1 ? spec : spec.slice(0, colon);
  const groupPart = colon === -1 ? undefined : spec.slice(colon + 1);
  if (userPart === '') throw new Error(`invalid --chown=${spec}: empty user`);
  if (groupPart === '') throw new Error(`invalid --chown=${spec}: empty group`);

  let owner: Owner;
  const uid = parseId(userPart);
  if (uid !== undefined) {
    owner = { uid, gid: uid };
  } else {
    const u = await lookupUser(destRoot, userPart);
    owner = { uid: u.uid, gid: u.gid };
  }
  if (groupPart !== undefined) {
    const gid = parseId(groupPart);
    owner.gid = gid ?? (await lookupGroup(destRoot, groupPart)).gid;
  }
  return owner;
}

/** --chmod: octal, or symbolic applied to each file's own mode (see fsutil/chmod). */
export { parseChmod, type ChmodFn } from '../fsutil/chmod.js';
