"""Fault injection (issue 10, point 5): kill -9 bbrun commands at random
moments, then re-run them. Whatever the moment, the re-run converges to
the same tree an uninterrupted run gives, `bbrun verify` passes where the
tree has a manifest, and no temp, pending, staging or backup file is left.

Delays are drawn from a seeded generator; the seed is printed (pytest -s,
or in the failure message) and can be set with BBRUN_FAULT_SEED to replay
a failure. BBRUN_FAULT_KILLS sets the kills per command (default 12).

Not here: killing a buildout re-run (issue 7 owns buildout scripts)."""

import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import build_buildout, copy_tree, make_venv, run

KILLS = int(os.environ.get("BBRUN_FAULT_KILLS", "12"))
SEED = int(os.environ.get("BBRUN_FAULT_SEED", str(int(time.time()))))
DEBRIS = (".bbrun-tmp.", ".bbrun-relocate", ".bbrun-staging.", ".bbrun-old.")


def rng(name):
    print("fault seed %d (%s)" % (SEED, name))
    return random.Random("%d-%s" % (SEED, name))


def digest(root):
    """Content, mode and link target of every entry; no inodes or times
    (the import index records directory mtimes, and freeze writes .pyc
    files into some directories: those are left out of its digest)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir", st.st_mode)
            else:
                with open(p, "rb") as f:
                    data = f.read()
                if rel == os.path.join(".bbrun", "index", "dirs.txt"):
                    data = re.sub(rb"(?m)^([^\t\n]*)\t\d+\t", rb"\1\tT\t", data)
                    data = re.sub(rb"\x1f\d+\x1f", b"\x1fT\x1f", data)
                out[rel] = (hashlib.sha256(data).hexdigest(), st.st_mode)
    return out


def debris(*dirs):
    found = []
    for d in dirs:
        for dirpath, dirnames, filenames in os.walk(d):
            found += [os.path.join(dirpath, n) for n in dirnames + filenames if any(m in n for m in DEBRIS)]
    return found


def timed(cmd, **kw):
    t = time.monotonic()
    run(cmd, **kw)
    return time.monotonic() - t


def kill_at(cmd, delay, **kw):
    """Start `cmd`, SIGKILL it after `delay` seconds (if still running)."""
    p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    try:
        p.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
    return p.returncode


@pytest.fixture(scope="module")
def built(tmp_path_factory, dists):
    """The sample buildout built but not frozen (its venv kept)."""
    base = tmp_path_factory.mktemp("faults")
    venv = base / "venv"
    make_venv(venv, dists)
    root = base / "built"
    build_buildout(root, venv, dists)
    return root


def test_kill_freeze(built, bbrun, tmp_path):
    work = tmp_path / "app"
    copy_tree(built, work)
    took = timed([bbrun, "freeze", work])
    want = digest(work)
    r = rng("freeze")
    for i in range(KILLS):
        shutil.rmtree(work)
        copy_tree(built, work)
        delay = r.uniform(0, took * 1.1)
        kill_at([bbrun, "freeze", work], delay)
        run([bbrun, "freeze", work])
        assert debris(work) == [], (SEED, i, delay)
        assert digest(work) == want, (SEED, i, delay)


@pytest.fixture(scope="module")
def two_archives(frozen_sample, bbrun, tmp_path_factory):
    """Two versions of the frozen sample (the second has one more file)."""
    base = tmp_path_factory.mktemp("versions")
    v1 = base / "v1.tar.gz"
    run([bbrun, "pack", frozen_sample["pristine"], "--format", "tar.gz", "-o", v1])
    src = copy_tree(frozen_sample["pristine"], base / "src")
    (src / "etc" / "version").write_text("2\n")
    v2 = base / "v2.tar.gz"
    run([bbrun, "pack", src, "--format", "tar.gz", "-o", v2])
    return v1, v2


def test_kill_install_fresh(two_archives, bbrun, tmp_path):
    v1, _ = two_archives
    dest = tmp_path / "srv" / "app"
    took = timed([bbrun, "install", "--no-sync", v1, dest])
    want = digest(dest)
    r = rng("install-fresh")
    for i in range(KILLS):
        shutil.rmtree(dest)
        delay = r.uniform(0, took * 1.1)
        kill_at([bbrun, "install", "--no-sync", v1, dest], delay)
        # Nothing or the whole tree.
        if dest.exists():
            assert run([bbrun, "verify", dest], check=False).returncode == 0, (SEED, i, delay)
        run([bbrun, "install", "--no-sync", v1, dest])
        assert run([bbrun, "verify", dest]).returncode == 0
        assert debris(dest.parent) == [], (SEED, i, delay)
        assert digest(dest) == want, (SEED, i, delay)


def test_kill_install_upgrade(two_archives, bbrun, tmp_path):
    v1, v2 = two_archives
    dest = tmp_path / "srv" / "app"
    run([bbrun, "install", "--no-sync", v1, dest])
    took = timed([bbrun, "install", "--no-sync", v2, dest])
    want = digest(dest)
    r = rng("install-upgrade")
    for i in range(KILLS):
        run([bbrun, "install", "--no-sync", v1, dest])
        delay = r.uniform(0, took * 1.1)
        kill_at([bbrun, "install", "--no-sync", v2, dest], delay)
        # The old tree or the new one, whole.
        assert run([bbrun, "verify", dest], check=False).returncode == 0, (SEED, i, delay)
        run([bbrun, "install", "--no-sync", v2, dest])
        assert run([bbrun, "verify", dest]).returncode == 0
        assert (dest / "etc" / "version").read_text() == "2\n"
        assert debris(dest.parent) == [], (SEED, i, delay)
        assert digest(dest) == want, (SEED, i, delay)


def test_kill_relocate_and_shebang(two_archives, bbrun, tmp_path):
    v1, _ = two_archives
    installed = tmp_path / "installed"
    run([bbrun, "install", "--no-sync", v1, installed])
    moved = tmp_path / "moved"
    copy_tree(installed, moved)
    took = timed([bbrun, "relocate", moved])
    want = digest(moved)
    r = rng("relocate")
    for i in range(KILLS):
        shutil.rmtree(moved)
        copy_tree(installed, moved)
        delay = r.uniform(0, took * 1.1)
        kill_at([bbrun, "relocate", moved], delay)
        run([bbrun, "relocate", moved])
        assert run([bbrun, "verify", moved]).returncode == 0, (SEED, i, delay)
        assert debris(moved) == [], (SEED, i, delay)
        assert digest(moved) == want, (SEED, i, delay)

    # shebang: back to the recorded interpreters and to the launcher again.
    took = timed([bbrun, "shebang", "--restore", moved]) + timed([bbrun, "shebang", moved])
    want = digest(moved)
    r = rng("shebang")
    for i in range(KILLS):
        delay = r.uniform(0, took * 0.6)
        kill_at([bbrun, "shebang", "--restore", moved], delay)
        run([bbrun, "shebang", "--restore", moved])
        kill_at([bbrun, "shebang", moved], delay)
        run([bbrun, "shebang", moved])
        assert run([bbrun, "verify", moved]).returncode == 0, (SEED, i, delay)
        assert debris(moved) == [], (SEED, i, delay)
        assert digest(moved) == want, (SEED, i, delay)
