"""A frozen Plone 6 tree for benchmarks and operator checks (issues 8, 11):
Products.CMFPlone 6.1.5 on Zope 5 (tests/plone.py), 227 eggs, its build
venv inside the tree, built at a long path A, started there once (so var/
holds a Data.fs, logs and caches, as on a deployed host), frozen, then
moved to `pristine` with A gone. Users copy `pristine` (`cp -a`) to where
they need it; to run "in place", copy it back to BUILD_ROOT.

Building takes minutes (wheels fetched once, then ~230 eggs installed), so
the result is cached under target/bench-cache/plone: the seeded, unfrozen
tree (`built`) and the frozen one (`pristine`). A new bbrun binary only
re-freezes a fresh copy of `built`; new pins rebuild everything.

    bash benches/plone_tree.sh          # release bbrun, prints the numbers
    python3 benches/plone_tree.py [BBRUN]
"""

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from appserver import free_port, http_get, start_instance, stop_instance, tree_stats  # noqa: E402
from plone import (  # noqa: E402
    BUILDOUT_CFG,
    PLONE_REQUIREMENTS,
    PLONE_VERSION,
    build_plone_buildout,
    egg_count,
    fetch_plone_dists,
    script_sys_path,
)
from support import TARGET, cargo_out, run  # noqa: E402

WORK = TARGET / "bench-cache" / "plone"
# Long, like a real deployment path: a moved tree's paths change length.
BUILD_ROOT = WORK / "a-rather-long-build-directory-name" / "that-keeps-going" / "plone-buildout"
BUILT = WORK / "built"
PRISTINE = WORK / "pristine"
STAMP = WORK / "tree.json"


def _digest(data):
    return hashlib.sha256(data).hexdigest()


def _file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_json(path, data):
    # Temp file + rename: an interrupted run never leaves a stamp that
    # claims a tree it did not finish.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _rmtree(path):
    if path.exists():
        shutil.rmtree(path)


def _build(info, log):
    """Fetch, build at BUILD_ROOT, start once, keep the result as BUILT."""
    _rmtree(WORK)
    WORK.mkdir(parents=True)
    t = time.monotonic()
    dists = fetch_plone_dists()
    info["seconds"]["fetch"] = round(time.monotonic() - t, 1)
    port = free_port()
    log("building Plone %s at %s (port %d) ..." % (PLONE_VERSION, BUILD_ROOT, port))
    t = time.monotonic()
    build_plone_buildout(BUILD_ROOT, dists, port)
    info["seconds"]["build"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    server = start_instance([BUILD_ROOT / "bin" / "instance", "fg"], BUILD_ROOT, port, timeout=300)
    try:
        status, body = http_get(port, "/", auth=None)
        assert status == 200, "GET / at the build root: HTTP %d\n%s" % (status, body[:2000])
    finally:
        output = stop_instance(server)
    assert server.returncode == 0, "the instance at the build root did not stop cleanly:\n" + output
    info["seconds"]["seed"] = round(time.monotonic() - t, 1)
    info["port"] = port
    info["eggs"] = egg_count(BUILD_ROOT)
    info["sys_path"] = len(script_sys_path(BUILD_ROOT / "bin" / "instance"))
    shutil.move(str(BUILD_ROOT), str(BUILT))


def _freeze(info, bbrun, log):
    """Copy BUILT back to BUILD_ROOT, freeze it there, move it to PRISTINE."""
    _rmtree(PRISTINE)
    _rmtree(BUILD_ROOT)
    BUILD_ROOT.parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-a", BUILT, BUILD_ROOT])
    log("freezing with %s ..." % bbrun)
    t = time.monotonic()
    run([bbrun, "freeze", BUILD_ROOT])
    info["seconds"]["freeze"] = round(time.monotonic() - t, 1)
    shutil.move(str(BUILD_ROOT), str(PRISTINE))
    shutil.rmtree(WORK / BUILD_ROOT.relative_to(WORK).parts[0])
    files, size = tree_stats(PRISTINE)
    info["files"], info["bytes"] = files, size


def frozen_plone_tree(bbrun, log=lambda msg: print(msg, file=sys.stderr)):
    """The cached frozen Plone tree, built or re-frozen as needed. Returns
    the stamp: pristine (path), build_root (gone), port (recorded in the
    tree), eggs, sys_path (entries in bin/instance), files, bytes,
    seconds (fetch, build, seed, freeze: of the run that made them),
    cached (whether this call reused the tree as it was)."""
    bbrun = Path(bbrun).resolve()
    want = _digest(("\n".join(PLONE_REQUIREMENTS) + BUILDOUT_CFG).encode())
    binary = _file_digest(bbrun)
    try:
        info = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        info = {}
    cached = True
    if info.get("requirements") != want or not BUILT.is_dir():
        info = {"requirements": want, "seconds": {}}
        _build(info, log)
        info["bbrun"] = None
        cached = False
    if info.get("bbrun") != binary or not PRISTINE.is_dir():
        _freeze(info, bbrun, log)
        info["bbrun"] = binary
        cached = False
    info["pristine"] = str(PRISTINE)
    info["build_root"] = str(BUILD_ROOT)
    _write_json(STAMP, info)
    return dict(info, pristine=PRISTINE, build_root=BUILD_ROOT, cached=cached)


def main():
    bbrun = Path(sys.argv[1]) if len(sys.argv) > 1 else cargo_out("release") / "bbrun"
    started = time.monotonic()
    tree = frozen_plone_tree(bbrun)
    print("Plone %s frozen tree: %s%s" % (PLONE_VERSION, tree["pristine"], " (cached)" if tree["cached"] else ""))
    print("  eggs: %d; sys.path entries in bin/instance: %d" % (tree["eggs"], tree["sys_path"]))
    print("  files: %d; size: %.0f MB" % (tree["files"], tree["bytes"] / 1e6))
    print("  seconds: %s; this run %.1fs" % (tree["seconds"], time.monotonic() - started))
    print("  instance port (recorded in the tree): %d" % tree["port"])


if __name__ == "__main__":
    main()
