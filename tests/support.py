"""Helpers to build real buildouts for tests and benchmarks (no pytest
needed): fetch distributions once, make venvs, run zc.buildout offline."""

import functools
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
CACHE = TARGET / "test-cache"
SAMPLE = REPO / "examples" / "sample-buildout"


@functools.lru_cache(maxsize=None)
def cargo_out(profile):
    """Where cargo puts the workspace's binaries for `profile` ("debug",
    "release"): .cargo/config.toml names the host as the build target (the
    launcher is linked static-pie), so target/<host triple>/<profile>."""
    host = os.environ.get("CARGO_BUILD_TARGET")
    if not host or host == "host-tuple":
        vv = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
        host = next(l.split(":", 1)[1].strip() for l in vv.splitlines() if l.startswith("host:"))
    return TARGET / host / profile

# Distributions the tests build from. Wheels for C extensions are
# manylinux builds for this interpreter.
REQUIREMENTS = [
    "zc.buildout==6.0.1",
    "zc.recipe.egg",
    "zc.recipe.cmmi",
    "setuptools",
    "wheel",
    "pip",
    "BTrees",
    "zope.interface",
    "importlib_metadata",  # the backport, and zipp with it
]


def run(cmd, check=True, **kw):
    """subprocess.run with text output captured; on failure the output is
    in the assertion message."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    proc = subprocess.run([str(c) for c in cmd], **kw)
    if check and proc.returncode != 0:
        raise AssertionError(
            "command failed (%d): %s\nstdout:\n%s\nstderr:\n%s"
            % (proc.returncode, " ".join(map(str, cmd)), proc.stdout, proc.stderr)
        )
    return proc


def base_python():
    """The interpreter behind the test venv: what a user builds with."""
    return getattr(sys, "_base_executable", sys.executable)


def fetch_dists(dest=None):
    """A local find-links directory, filled from PyPI once and reused."""
    d = Path(dest) if dest else CACHE / "dists"
    stamp = d / ".requirements"
    want = "\n".join(REQUIREMENTS)
    if not (stamp.exists() and stamp.read_text() == want):
        d.mkdir(parents=True, exist_ok=True)
        run([sys.executable, "-m", "pip", "download", "-q", "-d", d] + REQUIREMENTS)
        stamp.write_text(want)
    (d / "no-index").mkdir(exist_ok=True)
    return d


def make_venv(path, dists, packages=("zc.buildout==6.0.1",)):
    run([base_python(), "-m", "venv", path])
    run([path / "bin" / "python", "-m", "pip", "install", "-q", "--no-index", "-f", dists] + list(packages))
    return path / "bin" / "python"


def build_buildout(root, venv, dists, extra_cfg="", parts_cfg=None):
    """Copy the sample buildout to `root` and build it with `venv`'s
    buildout, offline."""
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    cfg = (SAMPLE / "buildout.cfg.in").read_text().replace("@DISTS@", str(dists))
    if parts_cfg is not None:
        cfg = parts_cfg.replace("@DISTS@", str(dists))
    (root / "buildout.cfg").write_text(cfg + extra_cfg)
    (root / "buildout.cfg.in").unlink()
    run([venv / "bin" / "buildout", "-c", root / "buildout.cfg"], cwd=root)
    return root


def tree_digest(root, skip=(".bbrun",)):
    """sha256 and inode of every file under root, for 'nothing changed'."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        # normpath, not lstrip("./"), which would also eat the dot of ".bbrun".
        dirnames[:] = [d for d in dirnames if os.path.normpath(os.path.join(rel_dir, d)) not in skip]
        for name in filenames:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                out[os.path.relpath(p, root)] = ("link", os.readlink(p))
                continue
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = (hashlib.sha256(f.read()).hexdigest(), os.stat(p).st_ino)
    return out


def copy_tree(src, dest):
    """A copy that keeps symlinks, modes and times, like `cp -a`."""
    run(["cp", "-a", src, dest])
    return Path(dest)
