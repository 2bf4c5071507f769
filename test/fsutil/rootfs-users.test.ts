import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lookupGroup, lookupUser } from '../../src/fsutil/rootfs-users.js';
import { makeRootfs, type TestRoot } from '../executor/rootfs.js';

describe("lookupUser / lookupGroup (the image's own /etc files)", () => {
  let t: TestRoot;
  beforeAll(async () => {
    t = await makeRootfs();
  });
  afterAll(async () => t.cleanup());

  it('resolves root by default with its home', async () => {
    expect(await lookupUser(t.rootfs, '')).toEqual({ uid: 0, gid: 0, additionalGids: [], home: '/root', name: 'root' });
  });

  it('resolves a name with its supplementary groups from /etc/group', async () => {
    expect(await lookupUser(t.rootfs, 'alice')).toEqual({ uid: 1000, gid: 1000, additionalGids: [50, 29], home: '/home/alice', name: 'alice' });
    expect((await lookupUser(t.rootfs, 'bob')).additionalGids).toEqual([29]);
  });

  it('resolves a uid with a passwd entry like the name', async () => {
    expect(await lookupUser(t.rootfs, '1001')).toMatchObject({ uid: 1001, gid: 1001, home: '/home/bob', name: 'bob' });
  });

  it('allows a uid with no passwd entry (gid 0, home /)', async () => {
    expect(await lookupUser(t.rootfs, '4242')).toEqual({ uid: 4242, gid: 0, additionalGids: [], home: '/' });
  });

  it('takes an explicit group by name or number and drops supplementary groups', async () => {
    expect(await lookupUser(t.rootfs, 'alice:audio')).toMatchObject({ uid: 1000, gid: 29, additionalGids: [] });
    expect(await lookupUser(t.rootfs, '1001:50')).toMatchObject({ uid: 1001, gid: 50, additionalGids: [] });
    expect(await lookupUser(t.rootfs, '7:7777')).toMatchObject({ uid: 7, gid: 7777 });
  });

  it('names the unknown user or group in the error', async () => {
    await expect(lookupUser(t.rootfs, 'mallory')).rejects.toThrow(/mallory/);
    await expect(lookupUser(t.rootfs, 'alice:nogroup')).rejects.toThrow(/nogroup/);
    await expect(lookupGroup(t.rootfs, 'wheel')).rejects.toThrow(/wheel/);
    expect(await lookupGroup(t.rootfs, 'staff')).toEqual({ gid: 50, name: 'staff' });
    expect(await lookupGroup(t.rootfs, '123')).toEqual({ gid: 123 });
  });

  it("never reads the host's passwd through a symlink", async () => {
    const t2 = await makeRootfs({ etc: false });
    try {
      await fsp.mkdir(path.join(t2.rootfs, 'etc'));
      // A passwd beside the rootfs on the host, with a user the image does not have.
      await fsp.writeFile(path.join(t2.dir, 'hostpasswd'), 'mallory:x:666:666::/:/bin/sh\n');
      // Followed naively from rootfs/etc this reaches <dir>/hostpasswd; inside the root it is /hostpasswd.
      await fsp.symlink('../../hostpasswd', path.join(t2.rootfs, 'etc', 'passwd'));
      await expect(lookupUser(t2.rootfs, 'mallory')).rejects.toThrow(/mallory/);
      // Sanity: the same file inside the root is read.
      await fsp.copyFile(path.join(t2.dir, 'hostpasswd'), path.join(t2.rootfs, 'hostpasswd'));
      expect(await lookupUser(t2.rootfs, 'mallory')).toMatchObject({ uid: 666 });
      await fsp.rm(path.join(t2.rootfs, 'hostpasswd'));
      expect(await lookupUser(t2.rootfs, '')).toEqual({ uid: 0, gid: 0, additionalGids: [], home: '/' });
    } finally {
      await t2.cleanup();
    }
  });
});
