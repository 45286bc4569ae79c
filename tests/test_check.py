"""`bbrun check`, `freeze --vendor-libs` and `freeze --bundle-python` on
real trees: a C extension linked to a library outside the tree, compiled
here with cc; the real loader (ldd, the interpreter's import) as referee."""

import json
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

from conftest import copy_tree, run

EXT_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")

EXT_C = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <unistd.h>
int bb_value(void);
/* getpid: a versioned libc symbol (GLIBC_2.2.5 on x86-64) to test against. */
static PyObject *value(PyObject *self, PyObject *args) {
    return PyLong_FromLong(bb_value() + (getpid() > 0 ? 0 : 1));
}
static PyMethodDef methods[] = {{"value", value, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "bbext", NULL, -1, methods};
PyMODINIT_FUNC PyInit_bbext(void) { return PyModule_Create(&mod); }
"""


def build_ext(work):
    """libbbmissing.so in work/libs, and the bbext extension linked to it
    with the absolute search path a build would leave. Returns both."""
    libs = work / "libs"
    libs.mkdir(parents=True)
    (work / "lib.c").write_text("int bb_value(void) { return 42; }\n")
    (work / "ext.c").write_text(EXT_C)
    lib = libs / "libbbmissing.so"
    run(["cc", "-shared", "-fPIC", "-Wl,-soname,libbbmissing.so", "-o", lib, work / "lib.c"])
    ext = work / ("bbext" + EXT_SUFFIX)
    run(["cc", "-shared", "-fPIC", "-I", sysconfig.get_paths()["include"], "-o", ext, work / "ext.c",
         "-L", libs, "-lbbmissing", "-Wl,-rpath," + str(libs)])
    return lib, ext


@pytest.fixture
def tree_with_ext(frozen_sample, tmp_path):
    """A copy of the frozen sample with bbext in its develop egg (on the
    scripts' sys.path); the library still in place outside the tree."""
    b = copy_tree(frozen_sample["pristine"], tmp_path / "b")
    lib, ext = build_ext(tmp_path / "work")
    placed = b / "src" / "demoapp" / ext.name
    shutil.copy2(ext, placed)
    return {"root": b, "lib": lib, "ext": placed, "rel": str(placed.relative_to(b))}


def check(bbrun, root, *extra, **kw):
    return run([bbrun, "check", *extra, root], check=False, **kw)


def import_ext(bbrun, root):
    return run([bbrun, root / "bin" / "py", "-c", "import bbext; print(bbext.value())"], check=False)


def test_sample_tree_passes_and_matches_ldd(frozen_sample, bbrun, tmp_path):
    b = copy_tree(frozen_sample["pristine"], tmp_path / "b")
    proc = check(bbrun, b)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok: every shared library resolves" in proc.stdout
    report = json.loads(check(bbrun, b, "--json").stdout)
    exts = [f for f in report["files"] if f["kind"] == "extension"]
    assert any(f["module"] == "BTrees._OOBTree" for f in exts), [f["module"] for f in exts]
    compared = 0
    for f in exts[:4]:
        ours = {lib["name"]: os.path.realpath(lib["path"]) for lib in f["libraries"]
                if not lib["name"].startswith("ld-linux")}
        out = run(["ldd", b / f["path"]], env={k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}).stdout
        theirs = {}
        for line in out.splitlines():
            if " => " in line:
                name, rest = line.strip().split(" => ")
                theirs[name] = os.path.realpath(rest.split(" (")[0].strip())
        assert ours == theirs, (f["path"], ours, theirs)
        compared += 1
    assert compared


def test_missing_library_reported_with_module(tree_with_ext, bbrun, tmp_path):
    b, lib = tree_with_ext["root"], tree_with_ext["lib"]
    assert check(bbrun, b).returncode == 0
    shutil.move(str(lib.parent), str(tmp_path / "libs-gone"))
    proc = check(bbrun, b)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "libbbmissing.so: not found" in proc.stdout
    assert "`import bbext` will fail" in proc.stdout
    assert tree_with_ext["rel"] in proc.stdout
    report = json.loads(check(bbrun, b, "--json").stdout)
    assert report["ok"] is False
    [problem] = report["problems"]
    assert problem["path"] == tree_with_ext["rel"]
    assert problem["module"] == "bbext"
    assert [m["name"] for m in problem["missing"]] == ["libbbmissing.so"]
    # The real interpreter agrees.
    assert import_ext(bbrun, b).returncode != 0


def test_vendor_libs_makes_tree_independent(tree_with_ext, bbrun, tmp_path):
    b, lib = tree_with_ext["root"], tree_with_ext["lib"]
    dry = json.loads(run([bbrun, "freeze", "--json", "--dry-run", "--vendor-libs", b]).stdout)
    assert any(n.startswith("would vendor libbbmissing.so") for n in dry["notes"]), dry["notes"]
    assert not (b / ".bbrun" / "lib").exists()
    out = json.loads(run([bbrun, "freeze", "--json", "--vendor-libs", b]).stdout)
    assert any("libbbmissing.so" in n for n in out["notes"]), out["notes"]
    vendored = b / ".bbrun" / "lib" / "libbbmissing.so"
    assert vendored.is_file()
    runpath = run(["readelf", "-d", tree_with_ext["ext"]]).stdout
    assert "$ORIGIN/../../.bbrun/lib" in runpath, runpath
    # Idempotent: a second run changes nothing.
    before = {p: p.read_bytes() for p in [vendored, tree_with_ext["ext"]]}
    run([bbrun, "freeze", "--vendor-libs", b])
    assert before == {p: p.read_bytes() for p in before}

    shutil.rmtree(lib.parent)
    proc = check(bbrun, b)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    imported = import_ext(bbrun, b)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "42"
    # And it still works after another move.
    c = copy_tree(b, tmp_path / "c")
    shutil.rmtree(b)
    assert import_ext(bbrun, c).stdout.strip() == "42"
    assert check(bbrun, c).returncode == 0


def test_newer_glibc_requirement_flagged(tree_with_ext, bbrun):
    """Rename the extension's GLIBC_2.2.5 requirement to a version no
    glibc has: what a module built on a newer distribution looks like."""
    ext = tree_with_ext["ext"]
    data = ext.read_bytes()
    if b"GLIBC_2.2.5\0" not in data:
        pytest.skip("no GLIBC_2.2.5 requirement to rewrite on this architecture")
    ext.write_bytes(data.replace(b"GLIBC_2.2.5\0", b"GLIBC_9.9.9\0"))
    proc = check(bbrun, tree_with_ext["root"], "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [problem] = json.loads(proc.stdout)["problems"]
    [v] = problem["versions"]
    assert v["library"] == "libc.so.6"
    assert v["missing"] == ["GLIBC_9.9.9"]
    assert v["newest_available"].startswith("GLIBC_2.")
    assert import_ext(bbrun, tree_with_ext["root"]).returncode != 0


def test_check_errors_exit_2(bbrun, tmp_path):
    proc = check(bbrun, tmp_path / "nope")
    assert proc.returncode == 2
    assert "nope" in proc.stderr


def test_bundle_python_runs_without_original_interpreter(frozen_sample, bbrun, tmp_path):
    b = copy_tree(frozen_sample["pristine"], tmp_path / "b")
    dry = json.loads(run([bbrun, "freeze", "--json", "--dry-run", "--bundle-python", b]).stdout)
    assert any(n.startswith("would bundle") for n in dry["notes"]), dry["notes"]
    assert not (b / ".bbrun" / "python").exists()
    run([bbrun, "freeze", "--bundle-python", b])
    bundled = b / ".bbrun" / "python" / "bin"
    assert any(p.name.startswith("python3.") for p in bundled.iterdir())
    assert not (b / ".bbrun" / "python" / "lib" / sysconfig.get_python_version()).joinpath("test").exists()
    again = json.loads(run([bbrun, "freeze", "--json", "--bundle-python", b]).stdout)
    assert any("already holds" in n for n in again["notes"]), again["notes"]
    proc = check(bbrun, b, "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report["problems"]
    assert report["interpreter"].startswith(str(b))
    # The real loader finds libpython and _ssl's libraries inside the tree.
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    for f in report["files"]:
        if f["kind"] == "executable" or f["module"] == "_ssl":
            out = run(["ldd", b / f["path"]], env=env).stdout
            for line in out.splitlines():
                name = line.strip().split(" ")[0]
                if name.startswith(("libpython", "libssl", "libcrypto")):
                    assert str(b) in line, (f["path"], line)

    c = copy_tree(b, tmp_path / "c")
    shutil.rmtree(b)
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    env = {"PATH": "/nonexistent", "BBRUN_CACHE_DIR": str(cache), "HOME": str(tmp_path)}
    code = "import sys, ssl, sqlite3, json, ctypes; print(json.dumps([sys.executable, sys.prefix]))"
    proc = run([bbrun, c / "bin" / "py", "-c", code], env=env)
    exe, prefix = json.loads(proc.stdout)
    assert exe.startswith(str(c) + "/"), exe
    assert prefix.startswith(str(c) + "/"), prefix
    out = json.loads(run([bbrun, c / "bin" / "demo", "x"], env=env).stdout)
    assert out["keys"] == ["a", "b"]


def test_vendor_then_drop_external_rpath(tree_with_ext, bbrun):
    """--external-rpath drop removes the build's library directory from the
    extension; vendoring must still find the library through it first."""
    b, lib = tree_with_ext["root"], tree_with_ext["lib"]
    run([bbrun, "freeze", "--vendor-libs", "--external-rpath", "drop", b])
    dyn = run(["readelf", "-d", tree_with_ext["ext"]]).stdout
    assert str(lib.parent) not in dyn, dyn
    assert "$ORIGIN/../../.bbrun/lib" in dyn, dyn
    shutil.rmtree(lib.parent)
    assert check(bbrun, b).returncode == 0
    assert import_ext(bbrun, b).stdout.strip() == "42"
