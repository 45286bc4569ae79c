"""Application state is data (docs/state.md): freeze records which paths
hold it, pack leaves it out, install over a tree keeps it (and keeps the
old tree for `bbrun rollback`), relocate never rewrites it, system
packages never own it. On the sample buildout with an application-server
layout: a zope.conf naming a FileStorage, blobs, logs, pid/lock files and
a zdaemon socket, with real files there and a real held lock."""

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

from conftest import build_buildout, copy_tree, make_venv, run

ZOPE_CONF = """%define INSTANCEHOME {root}/parts/instance
<zodb_db main>
  <filestorage>
    path {root}/var/filestorage/Data.fs
    blob-dir {root}/var/blobstorage
  </filestorage>
  mount-point /
</zodb_db>
pid-filename {root}/var/instance.pid
lock-filename {root}/var/instance.lock
<eventlog>
  <logfile>
    path {root}/var/log/event.log
  </logfile>
</eventlog>
<logger access>
  <logfile>
    path {root}/parts/log/access.log
  </logfile>
</logger>
<runner>
  socket-name {root}/var/zdsock
</runner>
"""

STATE_FILES = {
    "var/filestorage/Data.fs": "initial database\n",
    "var/filestorage/Data.fs.index": "index\n",
    "var/filestorage/Data.fs.lock": "",
    "var/blobstorage/0x01/blob.data": "blob\n",
    "var/instance.pid": "",  # a dead process's pid, written below
    "var/cache/template.cache": "cached\n",
}


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


@pytest.fixture(scope="module")
def frozen_app(tmp_path_factory, dists, bbrun):
    """The sample buildout built at A with an instance's config and state,
    a script outside bin/, frozen with var/cache as a cache, then moved
    away (A and the venv gone)."""
    base = tmp_path_factory.mktemp("state")
    venv = base / "venv"
    make_venv(venv, dists)
    a = base / "build-root-of-the-state-sample" / "buildout"
    a.parent.mkdir(parents=True)
    build_buildout(a, venv, dists)
    etc = a / "parts" / "instance" / "etc"
    etc.mkdir(parents=True)
    (etc / "zope.conf").write_text(ZOPE_CONF.format(root=a))
    # A script outside bin/ (zope2instance writes parts/instance/bin/interpreter)
    # naming the venv's site-packages, which freeze collects into the tree.
    (a / "parts" / "instance" / "bin").mkdir()
    shutil.copy2(a / "bin" / "buildout", a / "parts" / "instance" / "bin" / "interpreter")
    for rel, text in STATE_FILES.items():
        (a / rel).parent.mkdir(parents=True, exist_ok=True)
        (a / rel).write_text(text)
    (a / "var/instance.pid").write_text("%d\n" % dead_pid())
    (a / "var/log").mkdir()
    (a / "var/log/event.log").write_text("started instance in %s/parts/instance\n" % a)
    (a / "parts/log").mkdir()
    (a / "parts/log/access.log").write_text("GET / from %s\n" % a)
    (a / "VERSION").write_text("1\n")
    report = json.loads(run([bbrun, "freeze", "--json", "--state", "var/cache=cache", a]).stdout)
    pristine = base / "p"
    shutil.move(str(a), str(pristine))
    shutil.rmtree(a.parent)
    shutil.rmtree(venv)
    return {"pristine": pristine, "build_root": a, "report": report, "base": base}


def state_table(root):
    text = (root / ".bbrun" / "map.toml").read_text()
    import tomllib

    return tomllib.loads(text).get("state", {})


def tar_names(archive):
    mode = "r:gz" if str(archive).endswith(".gz") else None
    if mode:
        with tarfile.open(archive, mode) as t:
            return set(t.getnames())
    out = run(["tar", "--zstd", "-tf", archive]).stdout
    return {n.rstrip("/") for n in out.splitlines()}


def test_freeze_records_state_from_defaults_configs_and_options(frozen_app, bbrun, tmp_path):
    paths = {p["path"]: p for p in state_table(frozen_app["pristine"])["path"]}
    assert paths["var"]["class"] == "data" and paths["var"]["origin"] == "default"
    assert paths["var/log"]["class"] == "log"
    conf = "parts/instance/etc/zope.conf"
    assert paths["var/filestorage/Data.fs*"] == {"path": "var/filestorage/Data.fs*", "class": "data", "origin": conf}
    assert paths["var/blobstorage"]["class"] == "data"
    assert paths["var/instance.pid"]["class"] == "runtime"
    assert paths["var/instance.lock"]["class"] == "runtime"
    assert paths["var/zdsock"]["class"] == "runtime"
    assert paths["parts/log/access.log*"]["class"] == "log"
    assert paths["var/cache"] == {"path": "var/cache", "class": "cache", "origin": "option"}
    # Logs naming the build path are history: not in the inventory.
    inventory = (frozen_app["pristine"] / ".bbrun" / "inventory.toml").read_text()
    assert "event.log" not in inventory and "access.log" not in inventory
    assert conf in inventory
    # Freezing again keeps the options; --not-state takes a path out.
    c = copy_tree(frozen_app["pristine"], tmp_path / "c")
    run([bbrun, "freeze", c, "--not-state", "var/blobstorage"])
    st = state_table(c)
    assert "var/blobstorage" in st["not_state"]
    assert "var/cache" in {p["path"] for p in st["path"]}
    bad = run([bbrun, "freeze", c, "--state", "../etc"], check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "--state ../etc" in bad.stderr


@pytest.mark.parametrize("fmt", ["tar.zst", "tar.gz"])
def test_pack_leaves_state_out_and_data_only_when_asked(frozen_app, bbrun, tmp_path, fmt):
    src = frozen_app["pristine"]
    out = tmp_path / ("app." + fmt)
    s = json.loads(run([bbrun, "pack", src, "--format", fmt, "-o", out, "--json"]).stdout)
    names = tar_names(out)
    for rel in list(STATE_FILES) + ["var/log/event.log", "parts/log/access.log"]:
        assert rel not in names, rel
    # The state directories are there, empty, for the application.
    for d in ["var", "var/filestorage", "var/blobstorage", "var/log", "var/cache"]:
        assert d in names, d
    assert "parts/instance/etc/zope.conf" in names and "bin/demo" in names
    assert "var/filestorage/Data.fs (data)" in s["state_left_out"]
    assert "var/filestorage/Data.fs.lock (runtime)" in s["state_left_out"]
    with_data = tmp_path / ("data." + fmt)
    s = json.loads(run([bbrun, "pack", src, "--format", fmt, "-o", with_data, "--json", "--with-data"]).stdout)
    names = tar_names(with_data)
    assert {"var/filestorage/Data.fs", "var/filestorage/Data.fs.index", "var/blobstorage/0x01/blob.data"} <= names
    for rel in ["var/filestorage/Data.fs.lock", "var/instance.pid", "var/log/event.log",
                "var/cache/template.cache", "parts/log/access.log"]:
        assert rel not in names, rel
    assert sorted(s["data_packed"]) == [
        "var/blobstorage/0x01/blob.data", "var/filestorage/Data.fs", "var/filestorage/Data.fs.index"]


def hold_lock(path, kind):
    """A process holding a lock on path (fcntl or flock), until killed."""
    code = (
        "import fcntl, sys, time\n"
        "f = open(sys.argv[1], 'a')\n"
        "(fcntl.lockf if sys.argv[2] == 'fcntl' else fcntl.flock)(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code, str(path), kind], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def tree_v2(frozen_app, tmp_path):
    v2 = copy_tree(frozen_app["pristine"], tmp_path / "v2src")
    (v2 / "VERSION").write_text("2\n")
    return v2


def test_upgrade_keeps_state_refuses_running_instance_and_rolls_back(frozen_app, bbrun, tmp_path):
    v1 = tmp_path / "v1.tar.zst"
    run([bbrun, "pack", frozen_app["pristine"], "--format", "tar.zst", "-o", v1, "--with-data"])
    v2 = tmp_path / "v2.tar.zst"
    run([bbrun, "pack", tree_v2(frozen_app, tmp_path), "--format", "tar.zst", "-o", v2])
    dest = tmp_path / "srv" / "app"
    run([bbrun, "install", v1, dest])
    # The archive's data is the initial state of a fresh install.
    db = dest / "var/filestorage/Data.fs"
    assert db.read_text() == "initial database\n"
    # Nothing to roll back to yet: one line, nothing touched.
    proc = run([bbrun, "rollback", dest], check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "no previous tree to roll back to" in proc.stderr
    assert run([bbrun, "verify", dest]).returncode == 0
    # The application writes data, logs, a pid file; the user adds a file.
    with open(db, "a") as f:
        f.write("transaction 1\n")
    (dest / "var/blobstorage/0x02").mkdir()
    (dest / "var/blobstorage/0x02/new.blob").write_text("new blob\n")
    (dest / "var/log/event.log").write_text("log line naming %s\n" % dest)
    (dest / "parts/log").mkdir(exist_ok=True)
    (dest / "parts/log/access.log").write_text("GET /new\n")
    (dest / "notes.txt").write_text("mine\n")
    # verify: the state is expected to change; the user's file is not ours.
    verify = json.loads(run([bbrun, "verify", "--json", dest], check=False).stdout)
    assert verify["added"] == ["notes.txt"] and not verify["changed"] and not verify["missing"], verify
    assert {"var/filestorage/Data.fs", "var/log/event.log"} <= {e["path"] for e in verify["expected"]}
    before = {p: (dest / p).read_bytes() for p in [
        "var/filestorage/Data.fs", "var/blobstorage/0x02/new.blob", "var/log/event.log",
        "parts/log/access.log", "notes.txt"]}
    db_inode = db.stat().st_ino

    # A running instance blocks the upgrade: a held fcntl lock, a held
    # flock, a live pid file; each with one line, nothing changed.
    for kind in ["fcntl", "flock"]:
        holder = hold_lock(dest / "var/filestorage/Data.fs.lock", kind)
        try:
            proc = run([bbrun, "install", v2, dest], check=False)
        finally:
            holder.kill()
            holder.wait()
        assert proc.returncode == 2, proc.stdout
        err = proc.stderr.strip()
        assert len(err.splitlines()) == 1 and "an instance is running" in err and "--force" in err, err
        assert "var/filestorage/Data.fs.lock is locked" in err
        assert (dest / "VERSION").read_text() == "1\n"
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (dest / "var/instance.pid").write_text("%d\n" % sleeper.pid)
        proc = run([bbrun, "install", v2, dest], check=False)
        assert proc.returncode == 2 and "names live process %d" % sleeper.pid in proc.stderr
    finally:
        sleeper.kill()
        sleeper.wait()

    # The upgrade: code replaced, state and the user's file kept (moved:
    # the same inode), the old tree kept beside DEST.
    out = json.loads(run([bbrun, "install", "--json", v2, dest]).stdout)
    assert (dest / "VERSION").read_text() == "2\n"
    for p, data in before.items():
        assert (dest / p).read_bytes() == data, p
    assert db.stat().st_ino == db_inode
    assert "var" in out["kept"]["state"] and "notes.txt" in out["kept"]["unknown"]
    prev = tmp_path / "srv" / ".app.bbrun-prev"
    assert out["backup"] == str(prev)
    assert (prev / "VERSION").read_text() == "1\n" and not (prev / "var").exists()
    verify = json.loads(run([bbrun, "verify", "--json", dest], check=False).stdout)
    assert verify["added"] == ["notes.txt"] and not verify["changed"] and not verify["missing"], verify
    assert not [e for e in verify["expected"] if e["path"] == "var/log/event.log"
                and "rewritten" in e["reason"]]
    # The app runs from the upgraded tree.
    res = json.loads(run([dest / "bin" / "demo"], cwd=tmp_path).stdout)
    assert res["btrees"].startswith(str(dest) + "/")

    # Rollback: v1's code back, the state follows.
    with open(db, "a") as f:
        f.write("transaction 2\n")
    run([bbrun, "rollback", dest])
    assert (dest / "VERSION").read_text() == "1\n"
    assert db.read_text() == "initial database\ntransaction 1\ntransaction 2\n"
    assert (dest / "notes.txt").read_text() == "mine\n"
    assert (prev / "VERSION").read_text() == "2\n"
    verify = json.loads(run([bbrun, "verify", "--json", dest], check=False).stdout)
    assert verify["added"] == ["notes.txt"] and not verify["changed"] and not verify["missing"], verify


def test_relocate_never_rewrites_state(frozen_app, bbrun, tmp_path):
    c = copy_tree(frozen_app["pristine"], tmp_path / "moved")
    logs = {p: (c / p).read_bytes() for p in ["var/log/event.log", "parts/log/access.log"]}
    assert str(frozen_app["build_root"]).encode() in logs["var/log/event.log"]
    out = json.loads(run([bbrun, "relocate", "--json", c]).stdout)
    assert "parts/instance/etc/zope.conf" in out["rewritten"]
    assert not [p for p in out["rewritten"] if p.startswith("var/") or p.endswith(".log")]
    for p, data in logs.items():
        assert (c / p).read_bytes() == data
    assert str(c) + "/var/filestorage/Data.fs" in (c / "parts/instance/etc/zope.conf").read_text()


def test_verify_clean_after_move_relocate_pack_install_and_read_only(frozen_app, bbrun, tmp_path):
    """The false positive `changed: parts/instance/bin/interpreter`: a
    script outside bin/ that relocate rewrote, packed after the relocate,
    installed elsewhere. Then a read-only install (chmod -R a-w) verifies
    clean with a note, while a gained setuid bit fails."""
    moved = copy_tree(frozen_app["pristine"], tmp_path / "moved-by-hand")
    run([bbrun, "relocate", moved])
    body = (moved / "parts/instance/bin/interpreter").read_text()
    assert str(moved) + "/.bbrun/external/" in body
    archive = tmp_path / "app.tar.zst"
    run([bbrun, "pack", moved, "--format", "tar.zst", "-o", archive])
    dest = tmp_path / "inst"
    run([bbrun, "install", archive, dest])
    proc = run([bbrun, "verify", dest], check=False)
    assert proc.returncode == 0, proc.stdout
    assert "changed:" not in proc.stdout
    try:
        run(["chmod", "-R", "a-w", dest])
        proc = run([bbrun, "verify", dest], check=False)
        assert proc.returncode == 0, proc.stdout
        assert "note:" in proc.stdout and "lost write permission only" in proc.stdout
        rep = json.loads(run([bbrun, "verify", "--json", dest]).stdout)
        assert rep["mode_changed"] and not any(m["error"] for m in rep["mode_changed"])
        assert rep["changed"] == []
        run(["chmod", "u+w", dest / "bin"])
        (dest / "bin/demo").chmod(0o4555)
        proc = run([bbrun, "verify", dest], check=False)
        assert proc.returncode == 1
        assert "mode: bin/demo 0755 -> 4555 (gained setuid/setgid)" in proc.stdout
        assert "changed: bin/demo" not in proc.stdout
        (dest / "bin/demo").chmod(0o555)
        os.chown(dest / "bin/demo", 12345, 12345)
        rep = json.loads(run([bbrun, "verify", "--json", dest], check=False).stdout)
        assert not rep["ok"] and rep["owner_changed"] == [{"path": "bin/demo", "uid": 12345, "gid": 12345}]
    finally:
        run(["chmod", "-R", "u+w", dest])


def unique():
    return "bbrun-state-" + uuid.uuid4().hex[:8]


def test_deb_upgrade_keeps_state_until_purge(frozen_app, bbrun, tmp_path):
    if not shutil.which("dpkg"):
        pytest.skip("dpkg not available")
    name = unique()
    prefix = Path("/opt") / name
    debs = []
    for version, src in [("1.0", frozen_app["pristine"]), ("2.0", tree_v2(frozen_app, tmp_path))]:
        deb = tmp_path / ("app-%s.deb" % version)
        s = json.loads(run([bbrun, "pack", src, "--format", "deb", "-o", deb, "--json", "--prefix", prefix,
                            "--name", name, "--version", version]).stdout)
        debs.append(deb)
    assert "var/filestorage" in s["package"]["state_dirs"]
    contents = run(["dpkg-deb", "--contents", debs[0]]).stdout
    assert "/var/filestorage" not in contents and " opt/%s/var/" % name not in contents
    ctrl = tmp_path / "ctrl"
    run(["dpkg-deb", "--control", debs[0], ctrl])
    assert "%s/parts/instance/etc/zope.conf" % prefix in (ctrl / "conffiles").read_text()
    refused = run([bbrun, "pack", frozen_app["pristine"], "--format", "deb", "-o", tmp_path / "x.deb",
                   "--with-data"], check=False)
    assert refused.returncode == 2 and "--with-data" in refused.stderr
    db = prefix / "var/filestorage/Data.fs"
    try:
        run(["dpkg", "--force-depends", "-i", debs[0]])
        assert (prefix / "var/filestorage").is_dir() and not db.exists()
        db.write_text("written by the app\n")
        (prefix / "var/log/event.log").write_text("log\n")
        run(["dpkg", "--force-depends", "-i", debs[1]])
        assert (prefix / "VERSION").read_text() == "2\n"
        assert db.read_text() == "written by the app\n"
        assert (prefix / "var/log/event.log").read_text() == "log\n"
        run(["dpkg", "-r", name])
        assert db.read_text() == "written by the app\n"
        assert not (prefix / "bin").exists()
        run(["dpkg", "-P", name])
        assert not prefix.exists()
    finally:
        subprocess.run(["dpkg", "-P", name], capture_output=True)
        shutil.rmtree(prefix, ignore_errors=True)


def test_rpm_upgrade_keeps_state(frozen_app, bbrun, tmp_path):
    if not shutil.which("rpm"):
        pytest.skip("rpm not installed (apt-get install rpm)")
    name = unique()
    prefix = Path("/opt") / name
    rpms = []
    for version, src in [("1.0", frozen_app["pristine"]), ("2.0", tree_v2(frozen_app, tmp_path))]:
        rpm = tmp_path / ("app-%s.rpm" % version)
        run([bbrun, "pack", src, "--format", "rpm", "-o", rpm, "--prefix", prefix, "--name", name,
             "--version", version])
        rpms.append(rpm)
    files = run(["rpm", "-qlp", rpms[0]]).stdout.splitlines()
    assert not [f for f in files if f.startswith(str(prefix / "var"))]
    configs = run(["rpm", "-qcp", rpms[0]]).stdout.splitlines()
    assert str(prefix / "parts/instance/etc/zope.conf") in configs
    assert "mkdir -p" in run(["rpm", "-qp", "--scripts", rpms[0]]).stdout
    db_path = tmp_path / "rpmdb"
    db_path.mkdir()
    db = prefix / "var/filestorage/Data.fs"
    try:
        run(["rpm", "--dbpath", db_path, "-i", "--nodeps", rpms[0]])
        assert (prefix / "var/filestorage").is_dir()
        db.write_text("written by the app\n")
        run(["rpm", "--dbpath", db_path, "-U", "--nodeps", rpms[1]])
        assert (prefix / "VERSION").read_text() == "2\n"
        assert db.read_text() == "written by the app\n"
        run(["rpm", "--dbpath", db_path, "-e", name])
        assert db.read_text() == "written by the app\n"
        assert not (prefix / "bin").exists()
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


# A real application server (tests/appserver.py): data written over HTTP
# survives an upgrade; a running instance blocks it. One cycle per format.


def zope_v2(frozen_zope, tmp_path):
    """The newer release: a hand copy (relocated, as after mv) with a
    VERSION file, so packing it takes the route freeze, mv, relocate, pack."""
    v2 = copy_tree(frozen_zope["pristine"], tmp_path / "zope-v2")
    run([bbrun_path(), "relocate", v2])
    (v2 / "VERSION").write_text("2\n")
    return v2


def bbrun_path():
    from conftest import cargo_out

    return Path(os.environ.get("BBRUN", cargo_out("debug") / "bbrun"))


def test_zope_archive_upgrade_keeps_data_written_over_http(frozen_zope, bbrun, tmp_path):
    from appserver import add_folder, has_object, start_instance, stop_instance

    pristine = frozen_zope["pristine"]
    st = {p["path"]: p["class"] for p in state_table(pristine)["path"]}
    assert st["var"] == "data" and st.get("var/filestorage/Data.fs*") == "data", st
    v1 = tmp_path / "v1.tar.zst"
    s = json.loads(run([bbrun, "pack", pristine, "--format", "tar.zst", "-o", v1, "--json", "--with-data"]).stdout)
    assert "var/filestorage/Data.fs" in s["data_packed"]
    assert not [p for p in s["data_packed"] if p.endswith((".lock", ".pid", ".log"))]
    v2 = tmp_path / "v2.tar.zst"
    run([bbrun, "pack", zope_v2(frozen_zope, tmp_path), "--format", "tar.zst", "-o", v2])
    dest = tmp_path / "srv" / "zope"
    run([bbrun, "install", v1, dest])
    proc = run([bbrun, "verify", dest], check=False)
    assert proc.returncode == 0, proc.stdout
    port = frozen_zope["port"]
    server = start_instance([dest / "bin" / "instance", "fg"], dest, port)
    try:
        assert has_object(port, frozen_zope["seed"])  # the initial data
        add_folder(port, "written-before-upgrade")
        proc = run([bbrun, "install", v2, dest], check=False)
        assert proc.returncode == 2 and "an instance is running" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not (dest / "VERSION").exists()
    finally:
        stop_instance(server)
    run([bbrun, "install", v2, dest])
    assert (dest / "VERSION").read_text() == "2\n"
    # No false positive on the application server's scripts outside bin/
    # (parts/instance/bin/interpreter); its data is expected to change.
    proc = run([bbrun, "verify", dest], check=False)
    assert proc.returncode == 0 and "changed:" not in proc.stdout, proc.stdout
    server = start_instance([dest / "bin" / "instance", "fg"], dest, port)
    try:
        assert has_object(port, "written-before-upgrade")
        assert has_object(port, frozen_zope["seed"])
    finally:
        stop_instance(server)


def test_zope_deb_upgrade_keeps_data_written_over_http(frozen_zope, bbrun, tmp_path):
    if not shutil.which("dpkg"):
        pytest.skip("dpkg not available")
    from appserver import add_folder, has_object, start_instance, stop_instance

    name = unique()
    prefix = Path("/opt") / name
    debs = []
    for version, src in [("1.0", frozen_zope["pristine"]), ("2.0", zope_v2(frozen_zope, tmp_path))]:
        deb = tmp_path / ("zope-%s.deb" % version)
        run([bbrun, "pack", src, "--format", "deb", "-o", deb, "--prefix", prefix, "--name", name,
             "--version", version])
        debs.append(deb)
    port = frozen_zope["port"]
    try:
        run(["dpkg", "--force-depends", "-i", debs[0]])
        # The package ships no data; postinst made the state directories.
        # The admin puts the database there (the build's, which holds the
        # admin user: Zope consumed `inituser` when it was seeded).
        fs_dir = prefix / "var/filestorage"
        assert fs_dir.is_dir() and not (fs_dir / "Data.fs").exists()
        shutil.copy2(frozen_zope["pristine"] / "var/filestorage/Data.fs", fs_dir / "Data.fs")
        server = start_instance([prefix / "bin" / "instance", "fg"], prefix, port)
        try:
            assert has_object(port, frozen_zope["seed"])
            add_folder(port, "written-by-deb-v1")
        finally:
            stop_instance(server)
        run(["dpkg", "--force-depends", "-i", debs[1]])
        assert (prefix / "VERSION").read_text() == "2\n"
        server = start_instance([prefix / "bin" / "instance", "fg"], prefix, port)
        try:
            assert has_object(port, "written-by-deb-v1")
        finally:
            stop_instance(server)
        run(["dpkg", "-r", name])
        assert (fs_dir / "Data.fs").is_file()
    finally:
        subprocess.run(["dpkg", "-P", name], capture_output=True)
        shutil.rmtree(prefix, ignore_errors=True)
