"""Re-running bin/buildout at the target (issue 7): a frozen tree installed
or moved elsewhere, buildout.cfg edited there, buildout run again with no
network and no compiler -- enforced by the test itself: every re-run runs
inside `unshare -m -n` with a tmpfs over /usr/lib/gcc (gcc's cc1 gone).

The sample: the sample buildout plus a develop egg with a C extension
(src/fastdemo), a zc.recipe.cmmi part building a real shared library with
cc, and a zc.recipe.egg:custom egg linking it (tests/test_native.py)."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

import archives
from appserver import free_port, has_object, http_get, set_port, start_instance, stop_instance
from conftest import SAMPLE, copy_tree, make_venv, run
from test_native import native_parts, write_sources

HIDE_GCC = 'mount -t tmpfs none /usr/lib/gcc && exec "$@"'


def offline(cmd):
    """`cmd` with no network and no C compiler."""
    return ["unshare", "-m", "-n", "sh", "-c", HIDE_GCC, "sh"] + [str(c) for c in cmd]


FASTDEMO_SETUP = """\
from setuptools import Extension, setup
setup(name="fastdemo", version="1.0", packages=["fastdemo"],
      ext_modules=[Extension("fastdemo._speed", ["fastdemo/_speed.c"])])
"""
FASTDEMO_C = """\
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static PyObject *triple(PyObject *s, PyObject *a) {
    int x; if (!PyArg_ParseTuple(a, "i", &x)) return NULL; return PyLong_FromLong(3 * x);
}
static PyMethodDef m[] = {{"triple", triple, METH_VARARGS, ""}, {NULL}};
static struct PyModuleDef d = {PyModuleDef_HEAD_INIT, "_speed", NULL, -1, m};
PyMODINIT_FUNC PyInit__speed(void) { return PyModule_Create(&d); }
"""

CFG = """\
[buildout]
parts = app bbdemo bbext py buildout-script
develop = src/demoapp src/fastdemo
find-links = {dists}
    {links}
index = {dists}/no-index
newest = false
allow-picked-versions = true

[app]
recipe = zc.recipe.egg
eggs = demoapp
    fastdemo
interpreter = demopy
initialization = config = '${{buildout:directory}}/etc/demo.conf'
arguments = config

[buildout-script]
recipe = zc.recipe.egg
eggs = zc.buildout
scripts = buildout

"""

FAST = "import fastdemo, sys; print(fastdemo.triple(3), fastdemo._speed.__file__)"
EXT = "import bbext; print(bbext.answer(20), bbext.__file__)"


@pytest.fixture(scope="module")
def target_sample(tmp_path_factory, dists, bbrun):
    """Built at A with a venv's python (and cc), frozen, moved away with A
    and the venv gone; with a tar.zst of it."""
    base = tmp_path_factory.mktemp("target")
    tarball, links = write_sources(base / "src")
    venv = base / "venv"
    make_venv(venv, dists)
    a = base / "build-host" / "buildout"
    shutil.copytree(SAMPLE, a, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "buildout.cfg.in"))
    fast = a / "src" / "fastdemo"
    (fast / "fastdemo").mkdir(parents=True)
    (fast / "setup.py").write_text(FASTDEMO_SETUP)
    (fast / "fastdemo" / "__init__.py").write_text("from fastdemo._speed import triple\n")
    (fast / "fastdemo" / "_speed.c").write_text(FASTDEMO_C)
    (a / "buildout.cfg").write_text(CFG.format(dists=dists, links=links) + native_parts(tarball))
    run([venv / "bin" / "buildout"], cwd=a)
    run([bbrun, "freeze", a])
    pristine = base / "p"
    shutil.move(str(a), str(pristine))
    shutil.rmtree(venv)
    zst = archives.pack(pristine, base / "app.tar.zst", "zst")
    return {"pristine": pristine, "build_root": a, "zst": zst}


def native_hashes(root):
    """sha256 of every shared object in the tree: extensions, libraries."""
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            if ".so" in n and not p.is_symlink():
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    assert len(out) >= 5, out
    return out


def state(root):
    """Content and mode of everything a buildout run may change."""
    out = {}
    for top in ("bin", "parts", "develop-eggs", ".installed.cfg"):
        p = root / top
        paths = [p] if p.is_file() else sorted(q for q in p.rglob("*"))
        for q in paths:
            if q.is_symlink():
                out[str(q.relative_to(root))] = ("link", os.readlink(q))
            elif q.is_file():
                out[str(q.relative_to(root))] = (hashlib.sha256(q.read_bytes()).hexdigest(), q.stat().st_mode)
            else:
                out[str(q.relative_to(root))] = ("dir", q.stat().st_mode)
    return out


def eggs_listing(root):
    return sorted(str(p.relative_to(root)) for p in (root / "eggs").rglob("*.egg"))


def edit_cfg(root, old, new):
    cfg = root / "buildout.cfg"
    text = cfg.read_text()
    assert old in text
    cfg.write_text(text.replace(old, new, 1))


def add_interpreter(root):
    # Changes an option of the app part and adds an interpreter script.
    edit_cfg(root, "interpreter = demopy\n", "interpreter = demopy2\n")


def assert_kept_and_applied(root, out, so_before):
    """The change applied; the move-only parts kept; nothing native rebuilt."""
    assert "Installing app." in out and "Generated interpreter '%s/bin/demopy2'." % root in out, out
    for part in ("bbdemo", "bbext"):
        assert "Updating %s." % part in out, out
        assert "Installing %s." % part not in out and "Uninstalling %s." % part not in out, out
    # Develop eggs re-registered (pip install -e, no index, no isolation)...
    assert "Develop: '%s/src/fastdemo'" % root in out, out
    assert (root / "develop-eggs" / "fastdemo.egg-link").read_text().startswith(str(root / "src" / "fastdemo"))
    # ...and nothing compiled again: every .so the same bytes.
    assert native_hashes(root) == so_before


def test_the_test_takes_network_and_compiler_away(tmp_path):
    (tmp_path / "x.c").write_text("int x;\n")
    proc = run(offline(["cc", "-c", tmp_path / "x.c", "-o", tmp_path / "x.o"]), check=False)
    assert proc.returncode != 0 and "cc1" in proc.stderr, proc.stderr
    code = "import socket; socket.create_connection(('pypi.org', 443), timeout=5)"
    assert run(offline(["python3", "-c", code]), check=False).returncode != 0


def test_rerun_through_bbrun_after_install(target_sample, bbrun, tmp_path):
    dest = tmp_path / "opt" / "app"
    run([bbrun, "install", target_sample["zst"], dest])
    # A copy still at the build path: the re-run must not touch it.
    old = target_sample["build_root"]
    copy_tree(target_sample["pristine"], old)
    try:
        old_state = state(old)
        so_before = native_hashes(dest)
        add_interpreter(dest)
        proc = run(offline([bbrun, dest / "bin" / "buildout"]), cwd=dest)
        out = proc.stdout + proc.stderr
        assert_kept_and_applied(dest, out, so_before)
        assert state(old) == old_state
    finally:
        shutil.rmtree(old)
    # The new interpreter runs, directly too (install pointed scripts at
    # bbrun; the re-run's regenerated scripts are pointed again).
    launcher = "#!" + str(bbrun.resolve())
    for name in ("demopy2", "demo", "buildout"):
        assert (dest / "bin" / name).read_text().splitlines()[0] == launcher, name
    out = run([dest / "bin" / "demopy2", "-c", FAST]).stdout.split()
    assert out[0] == "9" and out[1].startswith(str(dest) + "/src/fastdemo/")
    out = run([bbrun, dest / "bin" / "py", "-c", EXT]).stdout.split()
    assert out[0] == "41" and out[1].startswith(str(dest) + "/develop-eggs/")
    # The freeze records follow, so the tree moves again.
    assert 'path = "bin/demopy2"' in (dest / ".bbrun" / "map.toml").read_text()
    again = copy_tree(dest, tmp_path / "again")
    run([bbrun, "relocate", again])
    out = run([bbrun, again / "bin" / "demopy2", "-c", FAST]).stdout.split()
    assert out[0] == "9" and out[1].startswith(str(again) + "/src/fastdemo/")


def test_rerun_directly_after_shebang(target_sample, bbrun, tmp_path):
    c = copy_tree(target_sample["pristine"], tmp_path / "c")
    run([bbrun, "relocate", c])
    run([bbrun, "shebang", c])
    so_before = native_hashes(c)
    add_interpreter(c)
    proc = run(offline([c / "bin" / "buildout"]), cwd=c)
    assert_kept_and_applied(c, proc.stdout + proc.stderr, so_before)
    assert (c / "bin" / "demopy2").read_text().startswith("#!" + str(bbrun.resolve()) + "\n")
    out = run([c / "bin" / "demopy2", "-c", FAST]).stdout.split()
    assert out[0] == "9"


def test_bbrun_buildout_relocates_a_hand_copy_and_regenerates_bin_buildout(target_sample, bbrun, tmp_path):
    # A hand copy nothing has relocated yet: `bbrun buildout` relocates it
    # first (a launch of any of its scripts would too, docs/launcher.md).
    h = copy_tree(target_sample["pristine"], tmp_path / "hand")
    so_before = native_hashes(h)
    add_interpreter(h)
    proc = run(offline([bbrun, "buildout", h]), cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert "relocated from %s first" % target_sample["build_root"] in out, out
    # The build venv is gone: bin/buildout is written for the interpreter
    # bbrun found here, and runs without bbrun.
    assert "regenerated %s/bin/buildout" % h in out, out
    assert_kept_and_applied(h, out, so_before)
    python = (h / "bin" / "buildout").read_text().splitlines()[0][2:]
    assert Path(python).exists() and "venv" not in python, python
    assert "buildout version" in run([h / "bin" / "buildout", "--version"], cwd=h).stdout


def test_failing_rerun_says_why_in_one_line_and_restores(target_sample, bbrun, tmp_path):
    c = copy_tree(target_sample["pristine"], tmp_path / "c")
    run([bbrun, "relocate", c])
    before, eggs = state(c), eggs_listing(c)
    cfg = (c / "buildout.cfg").read_text()
    add_interpreter(c)
    edit_cfg(c, "    fastdemo\n", "    fastdemo\n    transaction\n")
    proc = run(offline([bbrun, c / "bin" / "buildout"]), cwd=c, check=False)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert err == [
        "bbrun: error: %s/buildout.cfg: requirement 'transaction' is not in this tree and would need the network; "
        "add it on the build host, run buildout and bbrun freeze there, and ship the tree again "
        "(the tree was put back as it was before the run)" % c
    ], proc.stderr
    assert "Couldn't find a distribution for 'transaction'" in proc.stdout  # buildout's own output, above
    assert state(c) == before and eggs_listing(c) == eggs
    assert json.loads(run([bbrun, c / "bin" / "demo"]).stdout)["keys"] == ["a", "b"]

    # An edited C source needs the compiler this host does not have.
    (c / "buildout.cfg").write_text(cfg)
    src = c / "src" / "fastdemo" / "fastdemo" / "_speed.c"
    src.write_text(src.read_text() + "/* edited on the target */\n")
    proc = run(offline([bbrun, c / "bin" / "buildout"]), cwd=c, check=False)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "bbrun: error: %s/buildout.cfg: develop egg '%s/src/fastdemo' needs a C compiler (" % (c, c)
    ), proc.stderr
    assert state(c) == before and eggs_listing(c) == eggs
    assert json.loads(run([bbrun, c / "bin" / "demo"]).stdout)["keys"] == ["a", "b"]


def test_killed_rerun_is_put_back_by_the_next_launch(target_sample, bbrun, tmp_path):
    c = copy_tree(target_sample["pristine"], tmp_path / "c")
    run([bbrun, "relocate", c])
    before = state(c)
    add_interpreter(c)
    proc = subprocess.Popen(
        offline([bbrun, c / "bin" / "buildout"]), cwd=c, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    seen = []
    deadline = time.monotonic() + 120
    try:
        # Buildout removed every develop egg's files before this line.
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            seen.append(line)
            if not line or line.startswith("Develop: '%s/src/fastdemo'" % c):
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    # Every process of the group gone (pip's too): until then the run's
    # lock is held, and a launch leaves the tree alone.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    assert seen[-1].startswith("Develop:"), "".join(seen)
    assert (c / ".bbrun" / "buildout-journal.toml").exists()
    assert state(c) != before  # half-changed
    proc = run([bbrun, c / "bin" / "demo"])
    assert "put back the tree as it was before an interrupted buildout run" in proc.stderr
    assert json.loads(proc.stdout)["keys"] == ["a", "b"]
    assert state(c) == before
    assert not (c / ".bbrun" / "buildout-journal.toml").exists()
    assert not (c / ".bbrun" / "buildout-snapshot").exists()


# --- a real application server: Zope 5, ~80 eggs --------------------------


def test_zope_port_change_offline_and_failed_rerun_keeps_serving(frozen_zope, bbrun, tmp_path):
    root = copy_tree(frozen_zope["pristine"], tmp_path / "zope")
    run([bbrun, "relocate", root])
    so_before = {k: v for k, v in native_hashes(root).items()}
    data = (root / "var" / "filestorage" / "Data.fs").read_bytes()
    # Nothing changed but the place (and the interpreter: the build venv is
    # gone): the instance is updated, not reinstalled.
    out = run(offline([bbrun, "buildout", root]), cwd=root).stdout
    assert "Updating instance." in out and "Installing instance." not in out, out
    port = free_port()
    set_port(root, port)
    proc = run(offline([bbrun, "buildout", root]), cwd=root)
    out = proc.stdout + proc.stderr
    snap = [line for line in out.splitlines() if line.startswith("bbrun: snapshot of ")]
    print("zope re-run:", snap)
    assert "Installing instance." in out, out
    assert "127.0.0.1:%d" % port in (root / "parts" / "instance" / "etc" / "zope.conf").read_text() + (
        root / "parts" / "instance" / "etc" / "wsgi.ini"
    ).read_text()
    assert native_hashes(root) == so_before
    assert (root / "var" / "filestorage" / "Data.fs").read_bytes() == data

    def serves():
        server = start_instance([bbrun, root / "bin" / "instance", "fg"], root, port)
        try:
            status, body = http_get(port, "/", auth=None)
            assert status == 200, body[:2000]
            assert has_object(port, frozen_zope["seed"])
        finally:
            stop_instance(server)

    serves()
    before = state(root)
    edit_cfg(root, "eggs = Zope\n", "eggs = Zope\n    Products.CMFCore\n")
    proc = run(offline([bbrun, "buildout", root]), cwd=root, check=False)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "requirement 'Products.CMFCore' is not in this tree and would need the network" in err[0], proc.stderr
    assert state(root) == before
    assert native_hashes(root) == so_before
    serves()


def test_ctrl_c_restores(target_sample, bbrun, tmp_path):
    c = copy_tree(target_sample["pristine"], tmp_path / "c")
    run([bbrun, "relocate", c])
    before = state(c)
    add_interpreter(c)
    proc = subprocess.Popen(
        offline([bbrun, c / "bin" / "buildout"]),
        cwd=c,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    line = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and line is not None:
        line = proc.stdout.readline()
        if not line or line.startswith("Develop: '%s/src/fastdemo'" % c):
            break
    # As the terminal does: SIGINT to the whole foreground process group.
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bbrun: error: %s/buildout.cfg: buildout was interrupted (exit " % c), err
    assert lines[0].endswith("; the tree was put back as it was before the run"), err
    assert state(c) == before
    assert not (c / ".bbrun" / "buildout-journal.toml").exists()
    assert json.loads(run([bbrun, c / "bin" / "demo"]).stdout)["keys"] == ["a", "b"]


def test_bbrun_buildout_writes_a_missing_bin_buildout(target_sample, bbrun, tmp_path):
    c = copy_tree(target_sample["pristine"], tmp_path / "c")
    run([bbrun, "relocate", c])
    (c / "bin" / "buildout").unlink()
    so_before = native_hashes(c)
    proc = run(offline([bbrun, "buildout", c]), cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert "wrote %s/bin/buildout" % c in out, out
    assert "Updating bbdemo." in out and "Updating bbext." in out, out
    assert native_hashes(c) == so_before
    assert "buildout version 6.0.1" in run([c / "bin" / "buildout", "--version"], cwd=c).stdout
