"""`bbrun pack`: archives and system packages of a frozen tree, unpacked
or installed by the system's own tools (tar, dpkg, rpm) at another place,
and run there."""

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import copy_tree, run


def pack(bbrun, root, out, fmt, *extra):
    proc = run([bbrun, "pack", root, "--format", fmt, "-o", out, "--json", *extra])
    return json.loads(proc.stdout)


def demo_output(cmd):
    return json.loads(run(cmd).stdout)


def manifest_lines(path):
    lines = Path(path).read_text().splitlines()
    assert lines[0] == "bbrun-manifest\t1"
    return {line.split("\t")[0]: line.split("\t") for line in lines[1:]}


def test_pack_refuses_an_unfrozen_tree(bbrun, tmp_path):
    (tmp_path / "plain").mkdir()
    proc = run([bbrun, "pack", tmp_path / "plain", "--format", "tar.zst"], check=False)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "\n" not in err
    assert "not a frozen tree" in err and "bbrun freeze" in err
    assert not list(tmp_path.glob("*.tar.zst"))


@pytest.mark.parametrize("fmt,tar_flag", [("tar.zst", "--zstd"), ("tar.gz", "--gzip")])
def test_archive_unpacked_elsewhere_runs(frozen_sample, bbrun, tmp_path, fmt, tar_flag):
    src = copy_tree(frozen_sample["pristine"], tmp_path / "src")
    archive = tmp_path / ("app." + fmt)
    summary = pack(bbrun, src, archive, fmt)
    assert summary["format"] == fmt
    assert summary["output"] == str(archive)
    assert summary["bytes"] == archive.stat().st_size
    assert summary["files"] > 10
    assert len(summary["sha256"]) == 64
    assert not (src / ".bbrun" / "manifest.tsv").exists(), "pack must not write into the tree"

    dest = tmp_path / "somewhere" / "else" / "app"
    dest.mkdir(parents=True)
    run(["tar", tar_flag, "-xf", archive, "-C", dest])
    out = demo_output([bbrun, dest / "bin" / "demo", "x"])
    assert out["btrees"].startswith(str(dest) + "/")
    assert out["demoapp"].startswith(str(dest) + "/")
    assert out["argv"] == [str(dest / "bin" / "demo"), "x"]
    # Sources keep their mtimes, so the eggs' byte-code stays valid.
    rel = Path(out["btrees"]).relative_to(dest)
    # (tar keeps whole seconds, which is what a .pyc records.)
    assert int((dest / rel).stat().st_mtime) == int((src / rel).stat().st_mtime)

    # The manifest inside describes what was unpacked.
    entries = manifest_lines(dest / ".bbrun" / "manifest.tsv")
    demo = entries["bin/demo"]
    assert demo[1] == "file" and demo[2] == "0755"
    import hashlib

    assert demo[4] == hashlib.sha256((dest / "bin" / "demo").read_bytes()).hexdigest()
    assert ".bbrun/manifest.tsv" not in entries
    listed = set(entries)
    on_disk = set()
    for dirpath, dirnames, filenames in os.walk(dest):
        for n in dirnames + filenames:
            on_disk.add(os.path.relpath(os.path.join(dirpath, n), dest))
    # Running the script may add bytecode caches; nothing packed is missing.
    assert listed <= on_disk


@pytest.mark.parametrize("fmt", ["tar.zst", "tar.gz"])
def test_same_tree_packs_to_identical_bytes(frozen_sample, bbrun, tmp_path, fmt):
    src = copy_tree(frozen_sample["pristine"], tmp_path / "src")
    a = pack(bbrun, src, tmp_path / ("a." + fmt), fmt)
    b = pack(bbrun, src, tmp_path / ("b." + fmt), fmt)
    assert a["sha256"] == b["sha256"]
    assert (tmp_path / ("a." + fmt)).read_bytes() == (tmp_path / ("b." + fmt)).read_bytes()
    # A cp -a copy elsewhere (other inodes, same times) packs the same.
    other = copy_tree(src, tmp_path / "other-place")
    c = pack(bbrun, other, tmp_path / ("c." + fmt), fmt)
    assert c["sha256"] == a["sha256"]
    # SOURCE_DATE_EPOCH fixes the timestamps, and still packs identically.
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    outs = []
    for n in ("d", "e"):
        out = tmp_path / (n + "." + fmt)
        run([bbrun, "pack", src, "--format", fmt, "-o", out], env=env)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] != (tmp_path / ("a." + fmt)).read_bytes()
    listing = run(["tar", "--full-time", "-tvf", tmp_path / ("d." + fmt)]).stdout
    assert "2023-11-14" in listing and "root/root" in listing


def test_failed_pack_leaves_no_artifact(frozen_sample, bbrun, tmp_path):
    src = copy_tree(frozen_sample["pristine"], tmp_path / "src")
    out = tmp_path / "app.tar.zst"
    proc = run([bbrun, "pack", src, "--format", "tar.zst", "--level", "99", "-o", out], check=False)
    assert proc.returncode != 0 and "--level 99" in proc.stderr
    proc = run([bbrun, "pack", src, "--format", "tar.zst", "-o", src / "x.tar.zst"], check=False)
    assert proc.returncode != 0 and "inside the tree" in proc.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]


@pytest.mark.parametrize("fmt", ["tar.zst", "tar.gz"])
def test_pack_refuses_a_tree_it_cannot_archive(frozen_sample, bbrun, tmp_path, fmt):
    """An archive is written while the tree is listed: a fifo found deep in
    the tree after writing began is refused in one line naming the fifo
    (not the output), and neither the artifact nor a temporary is left."""
    src = copy_tree(frozen_sample["pristine"], tmp_path / "src")
    deep = sorted(p for p in src.rglob("*") if p.is_dir() and not p.is_symlink())[-1]
    fifo = deep / "zz-pipe"
    os.mkfifo(fifo)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = run([bbrun, "pack", src, "--format", fmt, "-o", out_dir / ("app." + fmt)], check=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode != 0, proc.stdout
    assert len(err) == 1 and str(fifo) in err[0] and "fifo" in err[0], err
    assert "cannot write" not in err[0], err
    assert list(out_dir.iterdir()) == []


def unique():
    return "bbrun-test-" + uuid.uuid4().hex[:10]


def check_package_tree(prefix, out):
    assert out["btrees"].startswith(prefix + "/")
    assert out["demoapp"].startswith(prefix + "/")


def test_deb_installs_and_runs_from_prefix(frozen_sample, bbrun, tmp_path):
    if not shutil.which("dpkg"):
        pytest.skip("dpkg not available")
    src = copy_tree(frozen_sample["pristine"], tmp_path / "src")
    before = {p: p.read_bytes() for p in (src / "bin").iterdir() if p.is_file()}
    name = unique()
    prefix = "/opt/" + name
    deb = tmp_path / "app.deb"
    summary = pack(
        bbrun, src, deb, "deb", "--prefix", prefix, "--name", name, "--version", "1.2.3",
        "--description", "Demo app\nPacked by the test suite.", "--depends", "libc6",
    )
    assert summary["package"]["prefix"] == prefix
    again = pack(
        bbrun, src, tmp_path / "again.deb", "deb", "--prefix", prefix, "--name", name,
        "--version", "1.2.3", "--description", "Demo app\nPacked by the test suite.",
        "--depends", "libc6",
    )
    assert again["sha256"] == summary["sha256"], "deb not reproducible"
    # The tree on disk is untouched.
    assert {p: p.read_bytes() for p in (src / "bin").iterdir() if p.is_file()} == before

    info = run(["dpkg-deb", "--info", deb]).stdout
    assert "Package: " + name in info
    assert "Version: 1.2.3" in info
    assert "Architecture: amd64" in info
    assert "Depends: python3.11, libc6" in info
    contents = run(["dpkg-deb", "--contents", deb]).stdout
    assert " opt/%s/bin/demo\n" % name in contents
    assert " opt/%s/.bbrun/bin/bbrun\n" % name in contents
    assert " opt/%s/.bbrun/manifest.tsv\n" % name in contents
    assert "root/root" in contents

    try:
        run(["dpkg", "--force-depends", "-i", deb])
        demo = Path(prefix) / "bin" / "demo"
        assert demo.read_text().splitlines()[0] == "#!%s/.bbrun/bin/bbrun" % prefix
        # Everything after line 1 is the original script.
        orig = before[src / "bin" / "demo"]
        assert demo.read_bytes().split(b"\n", 1)[1] == orig.split(b"\n", 1)[1]
        # The shipped launcher is static-pie (.cargo/config.toml): no
        # loader, no shared library, so any glibc of the target runs it
        # (and each launch skips dynamic linking).
        launcher = Path(prefix) / ".bbrun" / "bin" / "bbrun"
        assert "INTERP" not in run(["readelf", "-lW", launcher]).stdout
        dynamic = run(["readelf", "-dW", launcher]).stdout
        assert "(NEEDED)" not in dynamic and "(FLAGS_1)" in dynamic and "PIE" in dynamic, dynamic
        out = demo_output([demo, "y"])
        check_package_tree(prefix, out)
        assert out["argv"] == [str(demo), "y"]
        assert run(["dpkg-query", "-W", "-f=${Version}", name]).stdout == "1.2.3"
    finally:
        subprocess.run(["dpkg", "-r", name], capture_output=True)
        shutil.rmtree(prefix, ignore_errors=True)
    assert not Path(prefix).exists()


def test_rpm_installs_and_runs_from_prefix(frozen_sample, bbrun, tmp_path):
    if not shutil.which("rpm"):
        pytest.skip("rpm not installed (apt-get install rpm)")
    src = copy_tree(frozen_sample["pristine"], tmp_path / "src")
    name = unique()
    prefix = "/opt/" + name
    rpm = tmp_path / "app.rpm"
    pack(bbrun, src, rpm, "rpm", "--prefix", prefix, "--name", name, "--version", "2.0.1",
         "--description", "Demo app")
    # Reproducible too.
    rpm2 = tmp_path / "app2.rpm"
    pack(bbrun, src, rpm2, "rpm", "--prefix", prefix, "--name", name, "--version", "2.0.1",
         "--description", "Demo app")
    assert rpm.read_bytes() == rpm2.read_bytes()

    info = run(["rpm", "-qip", rpm]).stdout
    assert name in info and "2.0.1" in info and "x86_64" in info
    requires = run(["rpm", "-qp", "--requires", rpm]).stdout
    assert "python(abi) = 3.11" in requires
    files = run(["rpm", "-qlp", rpm]).stdout.splitlines()
    assert prefix + "/bin/demo" in files
    assert prefix + "/.bbrun/bin/bbrun" in files
    assert all(f.startswith(prefix) for f in files)

    db = tmp_path / "rpmdb"
    db.mkdir()
    try:
        run(["rpm", "--dbpath", db, "-i", "--nodeps", rpm])
        demo = Path(prefix) / "bin" / "demo"
        out = demo_output([demo, "z"])
        check_package_tree(prefix, out)
        assert os.access(Path(prefix) / ".bbrun" / "bin" / "bbrun", os.X_OK)
        run(["rpm", "--dbpath", db, "-e", name])
        assert not demo.exists()
    finally:
        shutil.rmtree(prefix, ignore_errors=True)
