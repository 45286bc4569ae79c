"""Archives for install tests and benchmarks, made with Python's tarfile,
independently of `bbrun pack`: a tree's manifest (.bbrun/manifest.tsv, the
format documented in crates/bbrun-archive/src/manifest.rs) and a tar.zst or
tar.gz of the tree. Hostile archives are crafted with the same helpers.

Command line (benches/install.sh): python3 tests/archives.py ROOT OUT [--gzip]
"""

import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile

MANIFEST = ".bbrun/manifest.tsv"


def _escape(s):
    if s == "-":
        return "\\x2d"
    out = []
    for c in s:
        if c == "\\":
            out.append("\\\\")
        elif c == "\t":
            out.append("\\t")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif ord(c) < 0x20 or c == "\x7f":
            out.append("\\x%02x" % ord(c))
        else:
            out.append(c)
    return "".join(out)


def walk(root):
    """(rel, abs, lstat) of every entry below root, sorted by path bytes."""
    items = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            items.append((os.path.relpath(p, root), p, os.lstat(p)))
    items.sort(key=lambda i: i[0].encode())
    return items


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(root):
    """Write ROOT/.bbrun/manifest.tsv describing the tree as it is."""
    lines = ["bbrun-manifest\t1"]
    first_name = {}
    for rel, p, st in walk(root):
        if rel == MANIFEST:
            continue
        mode = "%04o" % (st.st_mode & 0o7777)
        if stat.S_ISDIR(st.st_mode):
            row = (rel, "dir", mode, "0", "-", "-")
        elif stat.S_ISLNK(st.st_mode):
            t = os.readlink(p)
            row = (rel, "symlink", mode, str(len(t.encode())), "-", _escape(t))
        else:
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in first_name:
                row = (rel, "hardlink", mode, "0", "-", _escape(first_name[key]))
            else:
                if st.st_nlink > 1:
                    first_name[key] = rel
                row = (rel, "file", mode, str(st.st_size), sha256_file(p), "-")
        lines.append("\t".join((_escape(row[0]),) + row[1:]))
    os.makedirs(os.path.join(root, ".bbrun"), exist_ok=True)
    with open(os.path.join(root, MANIFEST), "w") as f:
        f.write("\n".join(lines) + "\n")


def tar_tree(root):
    """The uncompressed tar of a tree, entries sorted, hardlinks kept."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for rel, p, _ in walk(root):
            t.add(p, arcname=rel, recursive=False)
    return buf.getvalue()


def compress(data, fmt):
    if fmt == "gz":
        return gzip.compress(data, compresslevel=6, mtime=0)
    try:
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(data)
    except ImportError:
        zstd = shutil.which("zstd")
        assert zstd, "need the zstandard module or the zstd command"
        return subprocess.run(
            [zstd, "-q", "-3", "-c"], input=data, stdout=subprocess.PIPE, check=True
        ).stdout


def pack(root, out, fmt="zst"):
    """Manifest + tar.zst/tar.gz of `root` at `out`."""
    write_manifest(root)
    with open(out, "wb") as f:
        f.write(compress(tar_tree(root), fmt))
    return out


def crafted(out, members, fmt="zst"):
    """An archive of raw members: (name, type, data_or_linkname). Names are
    written as given: tarfile does not refuse `..` or absolute names."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            info.mtime = 1_600_000_000
            data = None
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = payload
            elif kind == tarfile.REGTYPE:
                data = payload
                info.size = len(payload)
            elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                info.devmajor, info.devminor = 1, 3
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    with open(out, "wb") as f:
        f.write(compress(buf.getvalue(), fmt))
    return out


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    pack(args[0], args[1], "gz" if "--gzip" in sys.argv else "zst")
