"""Hardening (issue 10), end to end with the real binary on the real frozen
sample: no foreign code loaded, no bytes lost, never a panic.

Each test copies the session's frozen sample (conftest) and breaks one
thing the way an attacker or a crash would."""

import gzip
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

import archives
from conftest import copy_tree, run

NOBODY = 65534


def one_line_error(proc, *needles):
    """A refusal as the standards want it: exit 2, one bounded line, no
    panic, and the words that say what to do."""
    err = proc.stderr
    assert proc.returncode == 2, (proc.returncode, err)
    assert "panicked" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bbrun: error: "), err
    assert len(lines[0]) <= 1100, len(lines[0])
    for n in needles:
        assert n in err, (n, err)
    return lines[0]


@pytest.fixture
def tree(frozen_sample, tmp_path):
    return copy_tree(frozen_sample["pristine"], tmp_path / "app")


def set_map(root, old, new):
    p = root / ".bbrun" / "map.toml"
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new, 1))


def demo(bbrun, root, **kw):
    proc = run([bbrun, root / "bin" / "demo", "z"], cwd=root, check=False, **kw)
    return proc


# -- 2. map fields --------------------------------------------------------


def test_nul_in_map_refused_by_every_command(tree, bbrun, tmp_path):
    """A NUL byte in a root used to abort the launcher (SIGABRT, exit 134)
    and pass install, relocate, verify, check and pack."""
    archives.write_manifest(tree)  # so verify gets as far as the map
    set_map(tree, "previous_roots = []", 'previous_roots = ["/old\\u0000root"]')
    for cmd in (
        [bbrun, tree / "bin" / "demo"],
        [bbrun, "relocate", tree],
        [bbrun, "check", tree],
        [bbrun, "pack", tree, "--format", "tar.zst", "-o", tmp_path / "x.tar.zst"],
    ):
        one_line_error(run(cmd, check=False), "NUL byte")
    assert not (tmp_path / "x.tar.zst").exists()
    # verify still compares the tree, but a map that does not load is
    # not "updated by bbrun": it is reported as changed.
    proc = run([bbrun, "verify", tree], check=False)
    assert proc.returncode == 1 and "changed: .bbrun/map.toml" in proc.stdout, proc.stdout
    # The same map arriving in an archive: refused, nothing installed.
    arch = archives.pack(tree, tmp_path / "nul.tar.zst")
    dest = tmp_path / "dest"
    one_line_error(run([bbrun, "install", arch, dest], check=False), "NUL byte")
    assert not dest.exists()
    assert [p for p in tmp_path.iterdir() if ".bbrun-staging." in p.name] == []


def test_in_tree_with_dotdot_refused(tree, bbrun):
    set_map(tree, "[build]\n", '[[prefix]]\noriginal = "/opt/x"\nin_tree = "../../etc"\n\n[build]\n')
    one_line_error(demo(bbrun, tree), "prefix.in_tree", "without `..`")


def test_tab_and_newline_in_root_survive_to_the_shim(frozen_sample, bbrun, tmp_path):
    """Any byte a Linux path may hold works: the tree lives under a
    directory whose name holds a tab and a newline."""
    odd = tmp_path / "we\tird\nname"
    odd.mkdir()
    root = copy_tree(frozen_sample["pristine"], odd / "app")
    proc = demo(bbrun, root)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["btrees"].startswith(str(root) + "/"), res
    assert res["config"].startswith(str(root) + "/"), res


# -- 2. files the launcher trusts ---------------------------------------


def test_loose_or_symlinked_state_refused_with_the_fix(tree, bbrun, frozen_sample, tmp_path):
    m = tree / ".bbrun" / "map.toml"
    m.chmod(0o666)
    one_line_error(demo(bbrun, tree), "writable by group or others", "chmod go-w")
    m.chmod(0o644)
    (tree / ".bbrun" / "shim" / "bbrun_shim.py").chmod(0o646)
    one_line_error(demo(bbrun, tree), "chmod go-w")
    (tree / ".bbrun" / "shim" / "bbrun_shim.py").chmod(0o644)
    # The shim's byte-code the interpreter loads is code too.
    pyc = next((tree / ".bbrun" / "shim" / "__pycache__").glob("sitecustomize.*.pyc"))
    pyc.chmod(0o646)
    one_line_error(demo(bbrun, tree), pyc.name, "chmod go-w")
    pyc.chmod(0o644)
    assert demo(bbrun, tree).returncode == 0

    # .bbrun/map.toml and .bbrun as symlinks into another tree.
    other = copy_tree(frozen_sample["pristine"], tmp_path / "other")
    m.unlink()
    m.symlink_to(other / ".bbrun" / "map.toml")
    one_line_error(demo(bbrun, tree), "a symlink")
    shutil.rmtree(tree / ".bbrun")
    (tree / ".bbrun").symlink_to(other / ".bbrun")
    one_line_error(demo(bbrun, tree), "a symlink")


# -- 1. safe cache directories ------------------------------------------


def sticky_tmp(path):
    """A private stand-in for /tmp (root-owned, 1777), so tests never
    touch the real /tmp/bbrun-UID another run may be using."""
    path.mkdir()
    path.chmod(0o1777)
    return path


def without_tree_shim(root):
    # A tree whose shim is not this bbrun's: the launcher needs a copy.
    shutil.rmtree(root / ".bbrun" / "shim")


def attack_env(tmp):
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_CACHE_HOME", "BBRUN_CACHE_DIR")}
    env["TMPDIR"] = str(tmp)
    return env


def test_planted_tmp_cache_dir_never_imported(tree, bbrun, tmp_path):
    """Another user pre-creates TMPDIR/bbrun-0 (0777) holding json.py; root
    runs a script with HOME unset: the planted module must never run."""
    without_tree_shim(tree)
    tmp = sticky_tmp(tmp_path / "tmp")
    planted = tmp / ("bbrun-%d" % os.geteuid())
    marker = tmp_path / "pwned"
    for owner, mode in ((NOBODY, 0o777), (NOBODY, 0o700), (0, 0o777)):
        if planted.exists():
            shutil.rmtree(planted)
        planted.mkdir()
        shim_dir = planted / "shim-planted"
        shim_dir.mkdir()
        for d in (planted, shim_dir):
            (d / "json.py").write_text("open(%r, 'w').write('ran')\n" % str(marker))
        os.chown(planted, owner, owner)
        planted.chmod(mode)
        proc = demo(bbrun, tree, env=attack_env(tmp))
        one_line_error(proc, str(planted), "BBRUN_CACHE_DIR")
        assert not marker.exists()
    # A safe choice works, and the planted directory stays unused.
    env = attack_env(tmp)
    env["BBRUN_CACHE_DIR"] = str(tmp_path / "cache")
    proc = demo(bbrun, tree, env=env)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o700


def test_cache_copy_of_the_shim_is_byte_compiled(tree, bbrun, tmp_path):
    """A tree whose shim is another bbrun's runs on a cache copy, which the
    launcher byte-compiles when it writes it: with PYTHONDONTWRITEBYTECODE
    set, nothing else would, and every launch would compile the shim."""
    without_tree_shim(tree)
    env = dict(os.environ, BBRUN_CACHE_DIR=str(tmp_path / "cache"), PYTHONDONTWRITEBYTECODE="1")
    proc = demo(bbrun, tree, env=env)
    assert proc.returncode == 0, proc.stderr
    (copy,) = (tmp_path / "cache").glob("shim-*")
    pycs = sorted(p.name.split(".")[0] for p in (copy / "__pycache__").glob("*.pyc"))
    assert pycs == ["bbrun_build", "bbrun_script", "bbrun_shim", "sitecustomize"]
    for p in (copy / "__pycache__").iterdir():
        assert stat.S_IMODE(p.stat().st_mode) & 0o022 == 0


@pytest.fixture
def public_tree(frozen_sample, bbrun):
    """A copy nobody can read but not write (root-owned, outside pytest's
    0700 tmp dir): a read-only target for a service user. Its owner
    relocated it, as a read-only tree at a new root needs."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="bbrun-hardening-"))
    base.chmod(0o755)
    root = copy_tree(frozen_sample["pristine"], base / "app")
    run([bbrun, "relocate", root])
    without_tree_shim(root)
    yield base, root
    shutil.rmtree(base)


@pytest.mark.parametrize("home", ["/nonexistent", None, "readonly"])
def test_service_user_runs_without_a_usable_home(public_tree, bbrun, home):
    """nobody (HOME=/nonexistent, or unset, or a read-only HOME) runs a
    script of a read-only tree whose shim must come from a cache: the
    per-uid directory under TMPDIR is used, created 0700."""
    base, root = public_tree
    tmp = sticky_tmp(base / "tmp")
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_CACHE_HOME", "BBRUN_CACHE_DIR")}
    env["TMPDIR"] = str(tmp)
    if home == "readonly":
        h = base / "home"
        h.mkdir()
        h.chmod(0o555)
        env["HOME"] = str(h)
    elif home:
        env["HOME"] = home
    cmd = ["runuser", "-u", "nobody", "--", str(bbrun), str(root / "bin" / "demo"), "z"]
    proc = run(cmd, check=False, cwd=base, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["btrees"].startswith(str(root) + "/")
    cache = tmp / ("bbrun-%d" % NOBODY)
    st = cache.stat()
    assert st.st_uid == NOBODY and stat.S_IMODE(st.st_mode) == 0o700
    assert "freeze` again" not in proc.stderr


# -- 3. install modes and recovery ----------------------------------------


def test_install_strips_unsafe_modes_unless_kept(tree, bbrun, tmp_path):
    (tree / "bin" / "demo").chmod(0o4755)
    (tree / "var").mkdir(exist_ok=True)
    (tree / "var").chmod(0o3777)
    (tree / "etc" / "demo.conf").chmod(0o666)
    (tree / ".bbrun" / "map.toml").chmod(0o666)
    arch = archives.pack(tree, tmp_path / "modes.tar.zst")
    dest = tmp_path / "dest"
    proc = run([bbrun, "install", arch, dest])
    assert "mode made safe" in proc.stdout and "bin/demo: 4755 -> 0755" in proc.stdout, proc.stdout
    assert stat.S_IMODE((dest / "bin" / "demo").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "var").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "etc" / "demo.conf").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / ".bbrun" / "map.toml").stat().st_mode) == 0o644
    report = run([bbrun, "verify", dest, "--json"], check=False)
    assert report.returncode == 0, report.stdout
    assert "mode made safe by install" in report.stdout
    assert demo(bbrun, dest).returncode == 0

    # --keep-modes keeps them (the loose map is then refused by install
    # itself, like the launcher would).
    (tree / ".bbrun" / "map.toml").chmod(0o644)
    arch = archives.pack(tree, tmp_path / "keep.tar.zst")
    kept = tmp_path / "kept"
    run([bbrun, "install", "--keep-modes", arch, kept])
    assert stat.S_IMODE((kept / "bin" / "demo").stat().st_mode) == 0o4755
    assert stat.S_IMODE((kept / "var").stat().st_mode) == 0o3777


def test_recovery_never_restores_a_planted_symlink(frozen_sample, bbrun, tmp_path):
    arch = tmp_path / "app.tar.zst"
    run([bbrun, "pack", frozen_sample["pristine"], "--format", "tar.zst", "-o", arch])
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    parent = tmp_path / "srv"
    parent.mkdir()
    dest = parent / "app"
    # DEST missing and a dead run's "backup" that is a symlink elsewhere.
    (parent / ".app.bbrun-old.4194304").symlink_to(outside)
    run([bbrun, "install", arch, dest])
    assert dest.is_dir() and not dest.is_symlink()
    assert (outside / "precious").read_text() == "keep"
    assert sorted(p.name for p in parent.iterdir()) == ["app"]
    # A real directory without a valid map is not restored either.
    shutil.rmtree(dest)
    junk = parent / ".app.bbrun-old.4194304"
    (junk / ".bbrun").mkdir(parents=True)
    (junk / ".bbrun" / "map.toml").write_text("format = 1\n")
    run([bbrun, "install", arch, dest])
    assert run([bbrun, "verify", dest]).returncode == 0
    assert sorted(p.name for p in parent.iterdir()) == ["app"]
    # Nor is a planted "previous tree" rolled back to: a symlink to another
    # tree (a valid one) under the backup name.
    other = copy_tree(frozen_sample["pristine"], tmp_path / "other")
    (parent / ".app.bbrun-prev").symlink_to(other)
    proc = run([bbrun, "rollback", dest], check=False)
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "no previous tree" in proc.stderr
    assert dest.is_dir() and not dest.is_symlink()
    assert run([bbrun, "verify", dest]).returncode == 0


# -- 4. bounded errors, pipes, gzip checks ---------------------------------


def test_errors_stay_one_bounded_line(tree, bbrun, frozen_sample, tmp_path):
    fresh = copy_tree(frozen_sample["pristine"], tmp_path / "fresh")
    set_map(tree, "previous_roots = []", 'previous_roots = ["%s"]' % ("r/" * (2 << 20)))
    line = one_line_error(demo(bbrun, tree), "previous_roots", "not an absolute path")
    assert "…" in line
    # A manifest with one 8 MiB path.
    archives.write_manifest(fresh)
    raw = archives.tar_tree(fresh)
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        members = [(m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        for m, data in members:
            if m.name == archives.MANIFEST:
                data = data + (b"x" * (8 << 20)) + b"\tfile\t644\t0\t-\t-\n"
                m.size = len(data)
            t.addfile(m, io.BytesIO(data) if data is not None else None)
    arch = tmp_path / "big.tar.zst"
    arch.write_bytes(archives.compress(out.getvalue(), "zst"))
    proc = run([bbrun, "install", arch, tmp_path / "d"], check=False)
    one_line_error(proc)
    assert len(proc.stderr) < 1200


@pytest.fixture(scope="module")
def sample_archives(frozen_sample, bbrun, tmp_path_factory):
    base = tmp_path_factory.mktemp("arch")
    out = {}
    for fmt in ("tar.zst", "tar.gz"):
        out[fmt] = base / ("app." + fmt)
        run([bbrun, "pack", frozen_sample["pristine"], "--format", fmt, "-o", out[fmt]])
    return out


def test_install_from_stdin_and_fifo(sample_archives, bbrun, tmp_path):
    arch = sample_archives["tar.zst"]
    with open(arch, "rb") as f:
        run([bbrun, "install", "-", tmp_path / "a"], stdin=f, text=False)
    assert run([bbrun, "verify", tmp_path / "a"]).returncode == 0
    # A pipe through /dev/stdin, and a FIFO.
    p = subprocess.run(
        "cat %s | %s install /dev/stdin %s" % (sample_archives["tar.gz"], bbrun, tmp_path / "b"),
        shell=True, capture_output=True, text=True,
    )
    assert p.returncode == 0, p.stderr
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen("cat %s > %s" % (arch, fifo), shell=True)
    run([bbrun, "install", fifo, tmp_path / "c"])
    writer.wait()
    assert run([bbrun, "verify", tmp_path / "c"]).returncode == 0
    # Not an archive on stdin: the right message.
    proc = run([bbrun, "install", "-", tmp_path / "d"], input="hello", check=False)
    one_line_error(proc, "unknown magic bytes")
    assert not (tmp_path / "d").exists()


def test_gzip_crc_and_trailing_data_checked(sample_archives, bbrun, tmp_path):
    good = sample_archives["tar.gz"].read_bytes()
    # Flip the CRC-32 in the gzip trailer: the data inflates, the check fails.
    bad_crc = good[:-8] + bytes([good[-8] ^ 0xFF]) + good[-7:]
    gzip.decompress(good)
    cases = {
        "crc": bad_crc,
        "trailing": good + b"garbage after the stream",
        "tar-trailing": gzip.compress(gzip.decompress(good) + b"\x00" * 512 + b"junk" + b"\x00" * 508),
    }
    for name, data in cases.items():
        arch = tmp_path / (name + ".tar.gz")
        arch.write_bytes(data)
        dest = tmp_path / name
        proc = run([bbrun, "install", arch, dest], check=False)
        one_line_error(proc)
        assert not dest.exists(), name
    zst = sample_archives["tar.zst"].read_bytes()
    arch = tmp_path / "trailing.tar.zst"
    arch.write_bytes(zst + b"garbage")
    one_line_error(run([bbrun, "install", arch, tmp_path / "z"], check=False))
    assert not (tmp_path / "z").exists()


# -- 5. debris --------------------------------------------------------------


def test_debris_swept_and_never_packed(tree, bbrun, tmp_path):
    so = next(tree.rglob("*.so"))
    debris = [
        so.with_name(so.name + ".bbrun-tmp.4194304"),
        tree / "bin" / ".demo.bbrun-tmp.4194304",
        tree / ".buildout.cfg.bbrun-relocate",
    ]
    for d in debris:
        d.write_bytes(b"partial")
    arch = tmp_path / "a.tar.zst"
    run([bbrun, "pack", tree, "--format", "tar.zst", "-o", arch])
    names = subprocess.run(["tar", "--zstd", "-tf", arch], capture_output=True, text=True, check=True).stdout
    assert "bbrun-tmp" not in names and "bbrun-relocate" not in names
    assert run([bbrun, "verify", tree], check=False).stdout.count("bbrun-tmp") == 0
    run([bbrun, "relocate", tree])
    assert not debris[2].exists()
    run([bbrun, "freeze", tree])
    assert [d for d in debris if d.exists()] == []


def test_report_into_a_closed_pipe_ends_quietly(tree, bbrun, tmp_path):
    """`bbrun relocate --json ROOT | head -c0`: the reader is gone before
    bbrun writes. It ends as `cat` would (SIGPIPE), never with a panic;
    and what it did is done (the tree is relocated)."""
    moved = tmp_path / "moved"
    os.rename(tree, moved)
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run([str(bbrun), "relocate", "--json", str(moved)], stdout=w, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(w)
    assert "panicked" not in proc.stderr, proc.stderr
    assert proc.returncode == -13, (proc.returncode, proc.stderr)
    assert str(moved) in (moved / ".bbrun" / "map.toml").read_text()
