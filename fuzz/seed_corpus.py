#!/usr/bin/env python3
"""Seed the fuzz corpora from a real frozen (and packed) tree.

    python3 fuzz/seed_corpus.py TREE

TREE is a frozen tree holding .bbrun/map.toml, inventory.toml and (after
`bbrun pack` or tests/archives.py) manifest.tsv. Writes fuzz/corpus/TARGET/
(not committed: regenerate it): the tree's own map, inventory and manifest;
small uncompressed tars of parts of the tree (as `bbrun install` reads them
after decompression); and the smallest ELF files of the tree."""

import io
import os
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def put(target, name, data):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def small_tar(root, rels):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for rel in rels:
            t.add(root / rel, arcname=rel, recursive=True)
    return buf.getvalue()


def main(tree):
    root = Path(tree)
    state = root / ".bbrun"
    for target, name in (("map", "map.toml"), ("inventory", "inventory.toml"), ("manifest", "manifest.tsv")):
        p = state / name
        if p.exists():
            # The head is enough to show the fuzzer the format; whole files
            # (hundreds of KiB) would only slow every execution.
            lines = p.read_bytes().splitlines(keepends=True)
            put(target, name, b"".join(lines[:60]))
    # Tars: the state dir, bin/, and a symlink + hardlink pair.
    put("tar_unpack", "state.tar", small_tar(root, [".bbrun/map.toml", ".bbrun/shim"]))
    put("tar_unpack", "bin.tar", small_tar(root, ["bin"]))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, kind, link in (("d", tarfile.DIRTYPE, ""), ("d/f", tarfile.REGTYPE, ""),
                                 ("d/l", tarfile.SYMTYPE, "f"), ("d/h", tarfile.LNKTYPE, "d/f")):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link
            data = b"hello\n" if kind == tarfile.REGTYPE else None
            info.size = len(data) if data else 0
            t.addfile(info, io.BytesIO(data) if data else None)
    put("tar_unpack", "links.tar", buf.getvalue())
    elves = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.is_symlink() or not p.is_file():
                continue
            with open(p, "rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    elves.append((p.stat().st_size, p))
    for size, p in sorted(elves)[:6]:
        put("elf_patch", p.name, p.read_bytes())


if __name__ == "__main__":
    main(sys.argv[1])
