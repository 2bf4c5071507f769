// A snapshot's change directory replicated into another one: directories made anew (with their
// metadata and xattrs, never overlay's private ones), files hard-linked, links, devices, fifos and
// overlay whiteouts re-created. Both trees are the snapshotter's own, so names come from readdir
// and nothing is followed.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { devMajor, devMinor, getXattr, mknod, OVERLAY_OPAQUE, readXattrs, setXattr } from './fsops.js';

export async function cloneTree(src: string, dest: string): Promise<void> {
  for (const name of await fsp.readdir(src)) {
    const s = path.join(src, name);
    const d = path.join(dest, name);
    const st = await fsp.lstat(s);
    if (st.isDirectory()) {
      await fsp.mkdir(d, { mode: 0o700 });
      await cloneTree(s, d);
    } else if (st.isFile()) {
      await fsp.link(s, d);
      continue; // a hard link shares the inode, metadata included
    } else if (st.isSymbolicLink()) {
      await fsp.symlink(await fsp.readlink(s), d);
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      await mknod(d, st.isCharacterDevice() ? 'c' : 'b', devMajor(st.rdev), devMinor(st.rdev));
    } else if (st.isFIFO()) {
      await mknod(d, 'p');
    } else {
      continue; // sockets: never part of a snapshot's changes
    }
    if (!st.isSymbolicLink()) {
      for (const [k, v] of await readXattrs(s)) await setXattr(d, k, v);
      // Overlay's own xattrs are never copied, except the one saying a directory hides its lowers.
      if (st.isDirectory() && (await getXattr(s, OVERLAY_OPAQUE))?.toString() === 'y') await setXattr(d, OVERLAY_OPAQUE, Buffer.from('y'));
      await fsp.chmod(d, st.mode & 0o7777);
    }
    await fsp.lchown(d, st.uid, st.gid);
    // Times last: making a directory's children changes its mtime.
    await fsp.lutimes(d, st.atime, st.mtime);
  }
}
