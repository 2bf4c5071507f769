#!/usr/bin/env python3
"""Writes the tar archives the ADD cases extract, byte for byte the same on every run.

    python3 testdata/differential/make-archives.py

The archives are committed; this script documents how they were made (fixed mtimes, sorted
entries, numeric owners, gzip without a name or time) and remakes them if a case needs changes.
"""
import gzip
import io
import lzma
import os
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
MTIME = 1_600_000_000


def member(name, kind, mode, uid=0, gid=0, data=b"", link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    info.mtime = MTIME
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


# A little tree with what extraction must preserve: modes (setuid, 0700 dir), owners, a symlink,
# a hard link, an empty dir and a nested file whose parent has no entry of its own.
TREE = [
    member("top/", tarfile.DIRTYPE, 0o755),
    member("top/hello.txt", tarfile.REGTYPE, 0o644, data=b"hello from the archive\n"),
    member("top/run.sh", tarfile.REGTYPE, 0o4755, data=b"#!/bin/sh\necho run\n"),
    member("top/owned.txt", tarfile.REGTYPE, 0o600, uid=1000, gid=50, data=b"owned by kiln:staff\n"),
    member("top/link", tarfile.SYMTYPE, 0o777, link="hello.txt"),
    member("top/hard", tarfile.LNKTYPE, 0o644, link="top/hello.txt"),
    member("top/private/", tarfile.DIRTYPE, 0o700, uid=1000, gid=1000),
    member("top/empty/", tarfile.DIRTYPE, 0o755),
    member("implied/parent/file.txt", tarfile.REGTYPE, 0o644, data=b"no parent entries\n"),
    member("rootfile.txt", tarfile.REGTYPE, 0o644, data=b"at the archive root\n"),
]


def tar_bytes(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in entries:
            if data is not None:
                data.seek(0)
            tar.addfile(info, data)
    return buf.getvalue()


def write(case, name, data):
    path = os.path.join(HERE, case, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


raw = tar_bytes(TREE)
gz = io.BytesIO()
with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0) as f:
    f.write(raw)
write("add-tar-gz", "archive.tar.gz", gz.getvalue())
write("add-tar-xz", "archive.tar.xz", lzma.compress(raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64))
write("add-tar-plain", "archive.tar", raw)

# Not an archive, only compressed: ADD copies it as it is (BuildKit unpacks only tar archives).
notar = io.BytesIO()
with gzip.GzipFile(filename="", mode="wb", fileobj=notar, mtime=0) as f:
    f.write(b"just compressed text, not a tar\n")
write("add-plain-file", "note.txt.gz", notar.getvalue())

# fid-add-*: owners of extracted entries. A "./" entry with its own owner and mode (skipped: the
# destination keeps its own), entries owned by various uids/gids, a directory that already exists
# in the image, implied parents, a symlink with an owner, and a hard link whose own header carries
# another owner and mode (extraction applies them to the shared inode).
OWNERS = [
    member("./", tarfile.DIRTYPE, 0o700, uid=7, gid=8),
    member("./d/", tarfile.DIRTYPE, 0o750, uid=1000, gid=50),
    member("./d/f.txt", tarfile.REGTYPE, 0o640, uid=1234, gid=5678, data=b"f\n"),
    member("./pre/", tarfile.DIRTYPE, 0o705, uid=11, gid=12),
    member("./pre/p.txt", tarfile.REGTYPE, 0o604, uid=13, gid=14, data=b"p\n"),
    member("./root.txt", tarfile.REGTYPE, 0o644, data=b"r\n"),
    member("./deep/er/x.txt", tarfile.REGTYPE, 0o600, uid=42, gid=43, data=b"x\n"),
    member("./sl", tarfile.SYMTYPE, 0o777, uid=99, gid=98, link="root.txt"),
    member("./orig.txt", tarfile.REGTYPE, 0o644, uid=0, gid=0, data=b"shared\n"),
    member("./hl", tarfile.LNKTYPE, 0o600, uid=77, gid=78, link="./orig.txt"),
]
owners = tar_bytes(OWNERS)
owners_gz = io.BytesIO()
with gzip.GzipFile(filename="", mode="wb", fileobj=owners_gz, mtime=0) as f:
    f.write(owners)
for case in ("fid-add-archive-owners", "fid-add-archive-chown", "fid-add-archive-chown-current"):
    write(case, "owners.tar", owners)
    write(case, "owners.tar.gz", owners_gz.getvalue())

# add-tar-bz2: bzip2 is the one compression of Docker's DecompressStream no other case has; a
# bzip2 tar named .bin shows that ADD detects archives by content, not by name.
import bz2  # noqa: E402

write("add-tar-bz2", "archive.tar.bz2", bz2.compress(raw, 9))
write("add-tar-bz2", "archive.bin", bz2.compress(raw, 9))

# add-not-an-archive: names that say tar, contents that are not one (text, empty, a truncated gzip).
write("add-not-an-archive", "notreally.tar", b"plain text in a file named .tar\n")
write("add-not-an-archive", "empty.tar", b"")
write("add-not-an-archive", "truncated.tar.gz", gz.getvalue()[:40])

# add-multi-archives: two archives into one directory, overlapping directories, one entry
# replacing a file the image already has, one replacing a directory with a file.
A = [
    member("shared/", tarfile.DIRTYPE, 0o755),
    member("shared/from-a.txt", tarfile.REGTYPE, 0o644, data=b"a\n"),
    member("existing.txt", tarfile.REGTYPE, 0o600, uid=5, gid=5, data=b"replaced by a\n"),
]
B = [
    member("shared/", tarfile.DIRTYPE, 0o700, uid=1000, gid=1000),
    member("shared/from-b.txt", tarfile.REGTYPE, 0o644, data=b"b\n"),
    member("was-dir", tarfile.REGTYPE, 0o644, data=b"now a file\n"),
]
b_gz = io.BytesIO()
with gzip.GzipFile(filename="", mode="wb", fileobj=b_gz, mtime=0) as f:
    f.write(tar_bytes(B))
write("add-multi-archives", "a.tar", tar_bytes(A))
write("add-multi-archives", "b.tar.gz", b_gz.getvalue())

# add-archive-breakout: an entry that climbs out of the destination.
write("add-archive-breakout", "evil.tar", tar_bytes([
    member("ok.txt", tarfile.REGTYPE, 0o644, data=b"ok\n"),
    member("../../../escape.txt", tarfile.REGTYPE, 0o644, data=b"escaped\n"),
]))
