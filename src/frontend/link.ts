// COPY --link / ADD --link: whether a step really gets BuildKit's linked form, and what it refuses.
//
// BuildKit (dockerfile2llb dispatchCopy) makes the copy on scratch and merges the result onto the
// stage (MergeOp) only when --chmod is not given: with --chmod, --link is dropped silently and the
// step is a plain COPY on the stage. kiln does the same, so both builders cache and layer the step
// alike.
//
// A linked copy never sees the stage's filesystem, so a --chown user or group *name* has no
// /etc/passwd or /etc/group to be looked up in. BuildKit fails such a build late, in the solver,
// with "invalid user index: -1" (moby/buildkit#2987; refused with a clear message by
// moby/buildkit#7134); kiln refuses it here, naming the line. Numbers (and "root", and an empty
// part, which BuildKit sends as id 0) need no lookup and work.

/** A --chown part BuildKit's llb.WithUser sends as a number (Go's ParseInt(s, 10, 32), or "root"). */
function isNumericPart(s: string): boolean {
  if (s === '' || s === 'root') return true;
  if (!/^[+-]?[0-9]+$/.test(s)) return false;
  const n = Number(s);
  return n >= -0x80000000 && n <= 0x7fffffff;
}

/**
 * The step's effective --link given its expanded --chown and --chmod (undefined when absent or
 * empty); throws with the reason when the linked form cannot be built.
 */
export function effectiveLink(link: boolean, chown: string | undefined, chmod: string | undefined): boolean {
  if (!link || chmod !== undefined) return false;
  if (chown !== undefined) {
    const colon = chown.indexOf(':');
    const parts = colon === -1 ? [chown] : [chown.slice(0, colon), chown.slice(colon + 1)];
    const named = parts.filter((p) => !isNumericPart(p));
    if (named.length > 0) {
      throw new Error(
        `--link with --chown=${chown}: the name ${JSON.stringify(named[0])} cannot be looked up, a --link layer is made without the image's /etc/passwd and /etc/group; use numeric ids (--chown=UID[:GID])`,
      );
    }
  }
  return true;
}
