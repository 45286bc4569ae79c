"""bbrun install / verify / relocate, end to end: a real buildout with a part
whose output lives in parts/ (zc.recipe.cmmi building a tiny configure+make
project), frozen, packed, installed elsewhere, then re-run with buildout."""

import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

import archives
from conftest import build_buildout, copy_tree, make_venv, run, tree_digest

CONFIGURE = """#!/bin/sh
# Needs no compiler: records the prefix for make.
prefix=/usr/local
for a in "$@"; do case "$a" in --prefix=*) prefix="${a#--prefix=}";; esac; done
printf 'PREFIX = %s\\n' "$prefix" > config.mk
"""
MAKEFILE = (
    "include config.mk\nall:\n\techo built > tiny.out\n"
    "install:\n\tmkdir -p $(PREFIX)/share/tiny\n\tcp tiny.out $(PREFIX)/share/tiny/tiny.out\n"
)

PARTS_CFG = """[buildout]
parts = app tiny
develop = src/demoapp
find-links = @DISTS@
index = @DISTS@/no-index
newest = false
allow-picked-versions = true

[app]
recipe = zc.recipe.egg
eggs =
    demoapp
    zc.buildout
interpreter = py

[tiny]
recipe = zc.recipe.cmmi
url = file://@TINY@
"""


def tiny_tarball(base):
    src = base / "tiny-1.0"
    src.mkdir()
    (src / "configure").write_text(CONFIGURE)
    (src / "configure").chmod(0o755)
    (src / "Makefile").write_text(MAKEFILE)
    out = base / "tiny-1.0.tar.gz"
    with tarfile.open(out, "w:gz") as t:
        t.add(src, arcname="tiny-1.0")
    shutil.rmtree(src)
    return out


@pytest.fixture(scope="module")
def frozen_parts(tmp_path_factory, dists, bbrun):
    """The sample buildout plus a cmmi part, built at a long path A, frozen,
    moved away (A and the venv gone); with a tar.zst and a tar.gz of it."""
    base = tmp_path_factory.mktemp("parts")
    tiny = tiny_tarball(base)
    venv = base / "venv"
    make_venv(venv, dists)
    a = base / "build-directory-for-the-parts-sample" / "buildout"
    a.parent.mkdir(parents=True)
    cfg = PARTS_CFG.replace("@TINY@", str(tiny))
    build_buildout(a, venv, dists, parts_cfg=cfg)
    assert (a / "parts" / "tiny" / "share" / "tiny" / "tiny.out").exists()
    run([bbrun, "freeze", a])
    pristine = base / "p"
    shutil.move(str(a), str(pristine))
    shutil.rmtree(venv)
    zst = archives.pack(pristine, base / "app.tar.zst", "zst")
    gz = archives.pack(pristine, base / "app.tgz", "gz")
    return {"pristine": pristine, "build_root": a, "zst": zst, "gz": gz, "base": base}


def offline_env(dists, tmp_path):
    """No compiler on PATH, pip kept to the local dists."""
    nocc = tmp_path / "nocc-bin"
    nocc.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(
        PATH=str(nocc),
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(dists),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    return env


def leftovers(parent, name):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("." + name + ".bbrun"))


@pytest.mark.parametrize("fmt", ["zst", "gz"])
def test_install_runs_scripts_from_dest(frozen_parts, bbrun, tmp_path, fmt):
    dest = tmp_path / "opt" / "app"
    out = json.loads(run([bbrun, "install", "--json", frozen_parts[fmt], dest]).stdout)
    assert out["dest"] == str(dest)
    assert ".installed.cfg" in out["rewritten"]
    assert "bin/demo" in out["scripts"]
    direct = json.loads(run([dest / "bin" / "demo", "x"], cwd=tmp_path).stdout)
    via = json.loads(run([bbrun, dest / "bin" / "demo", "y"]).stdout)
    for res in (direct, via):
        assert res["btrees"].startswith(str(dest) + "/")
        assert res["demoapp"].startswith(str(dest) + "/")
        assert res["keys"] == ["a", "b"]
    assert (dest / "bin" / "demo").read_text().splitlines()[0] == "#!" + str(bbrun.resolve())
    assert str(frozen_parts["build_root"]) not in (dest / ".installed.cfg").read_text()
    assert leftovers(dest.parent, "app") == []
    rep = run([bbrun, "verify", dest])
    assert "matches its manifest" in rep.stdout


HOSTILE = {
    "traversal": [("../outside/evil", tarfile.REGTYPE, b"x")],
    "absolute": [("@OUT@/abs-evil", tarfile.REGTYPE, b"x")],
    "symlink-write-through": [
        ("l", tarfile.SYMTYPE, "../outside"),
        ("l/pwned", tarfile.REGTYPE, b"x"),
    ],
    "symlink-escape": [("l", tarfile.SYMTYPE, "../outside")],
    "hardlink-outside": [("h", tarfile.LNKTYPE, "../outside/sentinel")],
    "hardlink-absolute": [("h", tarfile.LNKTYPE, "@OUT@/sentinel")],
    "hardlink-missing": [("h", tarfile.LNKTYPE, "nope")],
    "device": [("dev", tarfile.CHRTYPE, None)],
    "fifo": [("fifo", tarfile.FIFOTYPE, None)],
    "duplicate": [("a", tarfile.REGTYPE, b"1"), ("a", tarfile.REGTYPE, b"2")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_refused_nothing_outside(bbrun, tmp_path, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_text("keep")
    members = [(n.replace("@OUT@", str(outside)), k, p) for n, k, p in HOSTILE[case]]
    arch = archives.crafted(tmp_path / "evil.bin", members, "gz" if case == "device" else "zst")
    before = tree_digest(tmp_path, skip=())
    dest = tmp_path / "dest"
    proc = run([bbrun, "install", arch, dest], check=False)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert str(arch) in err
    assert members[-1][0] in err or members[0][0] in err, err
    assert tree_digest(tmp_path, skip=()) == before
    assert not dest.exists()
    assert leftovers(tmp_path, "dest") == []


def test_tampered_file_caught_by_install_and_verify(frozen_parts, bbrun, tmp_path):
    tree = copy_tree(frozen_parts["pristine"], tmp_path / "t")
    archives.write_manifest(tree)
    victim = "src/demoapp/demoapp/__init__.py"
    with open(tree / victim, "a") as f:
        f.write("# tampered\n")
    arch = tmp_path / "tampered.tar.zst"
    arch.write_bytes(archives.compress(archives.tar_tree(tree), "zst"))
    dest = tmp_path / "dest"
    proc = run([bbrun, "install", arch, dest], check=False)
    assert proc.returncode == 2
    assert victim in proc.stderr and "tampered" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not dest.exists() and leftovers(tmp_path, "dest") == []

    run([bbrun, "install", frozen_parts["zst"], dest])
    assert run([bbrun, "verify", dest]).returncode == 0
    with open(dest / victim, "a") as f:
        f.write("# tampered after install\n")
    (dest / "bin" / "extra").write_text("x")
    proc = run([bbrun, "verify", "--json", dest], check=False)
    assert proc.returncode == 1
    rep = json.loads(proc.stdout)
    assert rep["changed"] == [victim]
    assert rep["added"] == ["bin/extra"]
    assert {e["path"] for e in rep["expected"]} >= {".installed.cfg", ".bbrun/map.toml", "bin/demo"}
    # A recorded file is expected to differ only by the relocation rewrite.
    cfg = dest / ".installed.cfg"
    cfg.write_text(cfg.read_text().replace("recipe = zc.recipe.cmmi", "recipe = evil.recipe"))
    rep = json.loads(run([bbrun, "verify", "--json", dest], check=False).stdout)
    assert ".installed.cfg" in rep["changed"]


def buildout_keeps_parts(bbrun, root, env, cwd):
    """Run bin/buildout at `root`; assert parts/ untouched, scripts working."""
    parts_before = tree_digest(root / "parts")
    proc = run([bbrun, root / "bin" / "buildout"], cwd=cwd, env=env)
    log = proc.stdout + proc.stderr
    assert "Uninstalling" not in log and "Installing tiny" not in log, log
    assert "Updating tiny" in log, log
    assert tree_digest(root / "parts") == parts_before
    out = json.loads(run([root / "bin" / "demo"], cwd=cwd).stdout)
    assert out["btrees"].startswith(str(root) + "/")
    out = json.loads(run([bbrun, root / "bin" / "demo"], cwd=cwd).stdout)
    assert out["demoapp"].startswith(str(root) + "/")
    return log


def test_buildout_after_install_keeps_parts_and_old_tree(frozen_parts, bbrun, dists, tmp_path):
    dest = tmp_path / "deploy" / "app"
    run([bbrun, "install", frozen_parts["zst"], dest])
    # A copy of the tree still at the build path: buildout must not touch it.
    old = frozen_parts["build_root"]
    copy_tree(frozen_parts["pristine"], old)
    try:
        old_before = tree_digest(old, skip=())
        buildout_keeps_parts(bbrun, dest, offline_env(dists, tmp_path), dest)
        assert tree_digest(old, skip=()) == old_before
    finally:
        shutil.rmtree(old)


def test_hand_copy_relocates_on_first_run_or_by_command(frozen_parts, bbrun, dists, tmp_path):
    env = offline_env(dists, tmp_path)
    # A hand copy beside a copy still at the build path: its first launch
    # (here bin/buildout itself) rewrites its own files, never the other's.
    old = frozen_parts["build_root"]
    copy_tree(frozen_parts["pristine"], old)
    try:
        old_before = tree_digest(old, skip=())
        c = copy_tree(frozen_parts["pristine"], tmp_path / "copied")
        buildout_keeps_parts(bbrun, c, env, c)
        assert str(old) + "/" not in (c / ".installed.cfg").read_text()
        assert tree_digest(old, skip=()) == old_before
    finally:
        shutil.rmtree(old)

    # `bbrun relocate` does the same as a command, idempotently.
    d = copy_tree(frozen_parts["pristine"], tmp_path / "by-command")
    before = tree_digest(d)
    out = json.loads(run([bbrun, "relocate", "--json", d]).stdout)
    assert ".installed.cfg" in out["rewritten"]
    cfg = (d / ".installed.cfg").read_text()
    assert str(frozen_parts["build_root"]) not in cfg and str(d) + "/parts/tiny" in cfg
    assert run([bbrun, "verify", d]).returncode == 0
    again = run([bbrun, "relocate", d])
    assert "nothing to do" in again.stdout
    assert (d / ".installed.cfg").read_text() == cfg
    assert tree_digest(d / "parts") == {k[len("parts/"):]: v for k, v in before.items() if k.startswith("parts/")}


def test_reinstall_replaces_and_recovers_from_killed_runs(frozen_parts, bbrun, tmp_path):
    dest = tmp_path / "app"
    run([bbrun, "install", frozen_parts["zst"], dest])
    old_inode = (dest / "bin").stat().st_ino
    # A killed run's staging dir, and a backup from a run killed between
    # its two renames (DEST gone): the next run puts the backup back, then
    # cleans up and replaces.
    stale = tmp_path / ".app.bbrun-staging.999999"
    (stale / "junk").mkdir(parents=True)
    dest.rename(tmp_path / ".app.bbrun-old.999998")
    run([bbrun, "install", frozen_parts["gz"], dest])
    # The replaced tree is kept for `bbrun rollback` (docs/state.md).
    assert leftovers(tmp_path, "app") == [".app.bbrun-prev"]
    assert (dest / "bin").stat().st_ino != old_inode
    assert run([bbrun, "verify", dest]).returncode == 0

    # Refuses to replace what is not a bbrun tree.
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious").write_text("x")
    proc = run([bbrun, "install", frozen_parts["zst"], other], check=False)
    assert proc.returncode == 2 and "not a bbrun tree" in proc.stderr
    assert (other / "precious").read_text() == "x"


def test_kill_9_leaves_old_or_new_and_rerun_finishes(frozen_parts, bbrun, tmp_path):
    dest = tmp_path / "app"
    run([bbrun, "install", frozen_parts["zst"], dest])
    for delay in (0.05, 0.2, 0.5, 1.0):
        p = subprocess.Popen([str(bbrun), "install", str(frozen_parts["gz"]), str(dest)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        # Whatever the moment, DEST is a complete tree (old or new).
        assert run([bbrun, "verify", dest]).returncode == 0
        run([bbrun, "install", frozen_parts["gz"], dest])
        assert leftovers(tmp_path, "app") == [".app.bbrun-prev"]
        assert run([bbrun, "verify", dest]).returncode == 0


@pytest.mark.parametrize("fmt", ["tar.zst", "tar.gz"])
def test_install_what_bbrun_pack_wrote(frozen_parts, bbrun, tmp_path, fmt):
    out = tmp_path / ("app." + fmt)
    proc = run([bbrun, "pack", frozen_parts["pristine"], "--format", fmt, "-o", out], check=False)
    if "not implemented" in proc.stderr:
        pytest.skip("bbrun pack is not merged yet")
    assert proc.returncode == 0, proc.stderr
    dest = tmp_path / "srv" / "app"
    run([bbrun, "install", out, dest])
    res = json.loads(run([dest / "bin" / "demo"], cwd=tmp_path).stdout)
    assert res["btrees"].startswith(str(dest) + "/")
    assert run([bbrun, "verify", dest]).returncode == 0


def test_full_disk_leaves_previous_install(frozen_parts, bbrun, tmp_path):
    """On a filesystem with room for one tree but not two, a second install
    fails cleanly: the previous tree stays whole, no staging is left."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    size = sum(f.stat().st_size for f in frozen_parts["pristine"].rglob("*") if f.is_file())
    mib = size * 3 // 2 // (1 << 20) + 8
    if run(["mount", "-t", "tmpfs", "-o", "size=%dm" % mib, "tmpfs", mnt], check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        dest = mnt / "app"
        run([bbrun, "install", frozen_parts["zst"], dest])
        before = tree_digest(dest, skip=())
        proc = run([bbrun, "install", frozen_parts["zst"], dest], check=False)
        assert proc.returncode == 2
        assert "No space left" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert tree_digest(dest, skip=()) == before
        assert leftovers(mnt, "app") == []
        assert run([bbrun, "verify", dest]).returncode == 0
    finally:
        run(["umount", mnt], check=False)


@pytest.mark.parametrize("fmt", ["tar.zst", "tar.gz"])
def test_frozen_sample_packed_and_installed(frozen_sample, bbrun, tmp_path, fmt):
    """The plain sample (conftest), packed by bbrun pack, installed at a
    path it never lived at: `./bin/demo` and `bbrun bin/demo` from DEST."""
    arch = tmp_path / ("sample." + fmt)
    run([bbrun, "pack", frozen_sample["pristine"], "--format", fmt, "-o", arch])
    dest = tmp_path / "elsewhere" / "sample"
    run([bbrun, "install", arch, dest])
    for cmd in (["./bin/demo", "z"], [bbrun, "bin/demo", "z"]):
        res = json.loads(run(cmd, cwd=dest).stdout)
        assert res["btrees"].startswith(str(dest) + "/"), res
        assert res["zope_interface_c"].startswith(str(dest) + "/"), res
        assert res["keys"] == ["a", "b"]
    assert run([bbrun, "verify", dest]).returncode == 0


def test_virtualenv_interpreter_links_repointed_at_install(bbrun, dists, tmp_path):
    """A frozen venv links bin/python3 to the system interpreter: freeze
    records those links and install re-points them at a compatible
    interpreter here, with no flag. Any other link out of the tree is still
    refused by default, and kept with --allow-external-symlinks."""
    venv = tmp_path / "venv"
    make_venv(venv, dists, packages=("zope.interface",))
    run([bbrun, "freeze", venv])
    os.symlink("/etc", venv / "stray")
    arch = tmp_path / "venv.tar.zst"
    run([bbrun, "pack", venv, "--format", "tar.zst", "-o", arch])
    dest = tmp_path / "deployed-venv"
    proc = run([bbrun, "install", arch, dest], check=False)
    assert proc.returncode == 2 and "stray" in proc.stderr and "--allow-external-symlinks" in proc.stderr
    assert not dest.exists()
    out = json.loads(run([bbrun, "install", "--json", "--allow-external-symlinks", arch, dest]).stdout)
    assert any(s.startswith("stray -> /etc") for s in out["external_symlinks"]), out
    shutil.rmtree(dest)

    (venv / "stray").unlink()
    run([bbrun, "pack", venv, "--format", "tar.zst", "-o", arch])
    out = json.loads(run([bbrun, "install", "--json", arch, dest]).stdout)
    outward = [s for s in out["external_symlinks"] if " -> /" in s]
    assert outward and all(s.startswith("bin/python") for s in outward), out
    target = os.readlink(dest / outward[0].split(" -> ")[0])
    assert target.startswith("/") and os.path.exists(target)
    pip = run([dest / "bin" / "pip", "--version"]).stdout
    assert str(dest) + "/lib/" in pip
    assert run([bbrun, "verify", dest]).returncode == 0
