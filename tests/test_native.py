"""Native code: freeze makes RPATH/RUNPATH entries inside the tree
$ORIGIN-relative, so compiled extensions and the libraries they link
still load after the tree moves. Real builds (zc.recipe.cmmi,
zc.recipe.egg:custom), the real loader, `readelf` only to check."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, build_buildout, cargo_out, copy_tree, make_venv, run, tree_digest

# --- the sources the buildout builds -------------------------------------

CONFIGURE = """\
#!/bin/sh
# Just enough of autoconf's interface for zc.recipe.cmmi.
prefix=/usr/local
for arg in "$@"; do
    case "$arg" in --prefix=*) prefix="${arg#--prefix=}" ;; esac
done
sed "s|@PREFIX@|$prefix|" Makefile.in > Makefile
"""

MAKEFILE_IN = """\
PREFIX = @PREFIX@
all: libbbdemo.so
libbbdemo.so: bbdemo.c bbdemo.h
\tcc -shared -fPIC -o libbbdemo.so bbdemo.c
install: all
\tmkdir -p $(PREFIX)/lib $(PREFIX)/include
\tcp libbbdemo.so $(PREFIX)/lib/
\tcp bbdemo.h $(PREFIX)/include/
"""

EXT_C = """\
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "bbdemo.h"
static PyObject *answer(PyObject *self, PyObject *args) {
    int x;
    if (!PyArg_ParseTuple(args, "i", &x)) return NULL;
    return PyLong_FromLong(bbdemo_answer(x));
}
static PyMethodDef methods[] = {{"answer", answer, METH_VARARGS, "2x+1, in C"}, {NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "bbext", NULL, -1, methods};
PyMODINIT_FUNC PyInit_bbext(void) { return PyModule_Create(&mod); }
"""

SETUP_PY = """\
from setuptools import Extension, setup
setup(name="bbext", version="1.0",
      ext_modules=[Extension("bbext", ["bbext.c"], libraries=["bbdemo"])])
"""

CALL = "import bbext; print(bbext.answer(20), bbext.__file__)"


def _tar(src_dir, out):
    with tarfile.open(out, "w:gz") as t:
        t.add(src_dir, arcname=src_dir.name)
    return out


def write_sources(base):
    """libbbdemo-1.0.tar.gz (configure + Makefile) and an sdist
    bbext-1.0.tar.gz in a find-links dir."""
    lib = base / "libbbdemo-1.0"
    lib.mkdir(parents=True)
    (lib / "configure").write_text(CONFIGURE)
    (lib / "configure").chmod(0o755)
    (lib / "Makefile.in").write_text(MAKEFILE_IN)
    (lib / "bbdemo.h").write_text("int bbdemo_answer(int x);\n")
    (lib / "bbdemo.c").write_text('#include "bbdemo.h"\nint bbdemo_answer(int x) { return 2 * x + 1; }\n')
    ext = base / "bbext-1.0"
    ext.mkdir()
    (ext / "setup.py").write_text(SETUP_PY)
    (ext / "bbext.c").write_text(EXT_C)
    (ext / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: bbext\nVersion: 1.0\n")
    links = base / "links"
    links.mkdir()
    _tar(ext, links / "bbext-1.0.tar.gz")
    return _tar(lib, base / "libbbdemo-1.0.tar.gz"), links


def egg_name():
    # What zc.recipe.egg:custom names the egg it builds. The build venv's
    # interpreter is this one's base, so version and platform agree.
    import sysconfig

    return "bbext-1.0-py%d.%d-%s.egg" % (sys.version_info[0], sys.version_info[1], sysconfig.get_platform())


def native_parts(tarball):
    """The [bbdemo] (a C library built by zc.recipe.cmmi), [bbext] (an egg
    compiled against it by zc.recipe.egg:custom, with an absolute rpath)
    and [py] sections, shared with test_target_buildout.

    zc.buildout 6.0.1 does not find the egg zc.recipe.egg:custom builds (a
    .dist-info inside a develop-eggs/*.egg dir is missed when it scans
    develop-eggs), so the interpreter names it in extra-paths."""
    return textwrap.dedent(
        f"""\
        [bbdemo]
        recipe = zc.recipe.cmmi
        url = file://{tarball}

        [bbext]
        recipe = zc.recipe.egg:custom
        egg = bbext
        include-dirs = parts/bbdemo/include
        library-dirs = parts/bbdemo/lib
        rpath = parts/bbdemo/lib

        [py]
        recipe = zc.recipe.egg
        eggs = zc.buildout
        extra-paths = ${{buildout:develop-eggs-directory}}/{egg_name()}
        interpreter = py
        """
    )


def buildout_cfg(dists, tarball, links):
    head = textwrap.dedent(
        f"""\
        [buildout]
        parts = bbdemo bbext py
        find-links = {dists}
            {links}
        index = {dists}/no-index
        newest = false
        allow-picked-versions = true

        """
    )
    return head + native_parts(tarball)


def readelf_paths(path):
    """{'RPATH': ..., 'RUNPATH': ...} as readelf -d prints them."""
    out = run(["readelf", "-d", path]).stdout
    found = {}
    for line in out.splitlines():
        for tag in ("RPATH", "RUNPATH"):
            if "(%s)" % tag in line:
                found[tag] = line[line.index("[") + 1 : line.rindex("]")]
    return found


def elf_files(root):
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames:
            p = Path(dirpath) / n
            if not p.is_symlink():
                with open(p, "rb") as f:
                    if f.read(4) == b"\x7fELF":
                        yield p


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- the build, once per root length ------------------------------------


@pytest.fixture(scope="module", params=["long-root", "short-root"])
def cmmi_build(request, tmp_path_factory, dists, bbrun):
    """Build the cmmi + custom-egg buildout at A, keep an unfrozen copy U,
    freeze A (after a dry run), move A to B with A gone.

    The short root makes the $ORIGIN form longer than the absolute path it
    replaces, so the rewrite must grow the string table."""
    base = tmp_path_factory.mktemp("native")
    tarball, links = write_sources(base / "src")
    venv = base / "venv"
    make_venv(venv, dists)
    if request.param == "short-root":
        a = Path("/tmp/b%d" % (os.getpid() % 1000))
        shutil.rmtree(a, ignore_errors=True)
        request.addfinalizer(lambda: shutil.rmtree(a, ignore_errors=True))
    else:
        a = base / "a-build-directory" / "with" / "some" / "depth" / "buildout"
    a.mkdir(parents=True)
    (a / "buildout.cfg").write_text(buildout_cfg(dists, tarball, links))
    run([venv / "bin" / "buildout", "-c", a / "buildout.cfg"], cwd=a)
    ext = next((a / "develop-eggs" / egg_name()).glob("bbext*.so"))
    before = readelf_paths(ext)

    unfrozen = copy_tree(a, base / "unfrozen")
    digest = tree_digest(a)
    dry = json.loads(run([bbrun, "freeze", "--dry-run", "--json", a]).stdout)
    assert tree_digest(a) == digest, "a dry run wrote something"
    report = json.loads(run([bbrun, "freeze", "--json", a]).stdout)
    b = base / "b"
    shutil.move(str(a), str(b))
    return {
        "a": a,
        "b": b,
        "unfrozen": unfrozen,
        "venv": venv,
        "ext_rel": ext.relative_to(a),
        "before": before,
        "dry": dry,
        "report": report,
        "short": request.param == "short-root",
    }


def test_build_links_the_extension_with_an_absolute_rpath_into_parts(cmmi_build):
    a = str(cmmi_build["a"])
    values = cmmi_build["before"]
    assert any(e == a + "/parts/bbdemo/lib" for v in values.values() for e in v.split(":")), values


def test_frozen_tree_imports_and_calls_into_the_library_after_move(cmmi_build, bbrun):
    b = cmmi_build["b"]
    assert not cmmi_build["a"].exists()
    out = run([bbrun, b / "bin" / "py", "-c", CALL]).stdout.split()
    assert out[0] == "41"
    assert out[1].startswith(str(b) + "/develop-eggs/")


def test_unfrozen_moved_copy_fails_in_the_loader(cmmi_build):
    # Same interpreter, same sys.path shape, no rewrite: the loader looks
    # for libbbdemo.so under A, which is gone.
    u = cmmi_build["unfrozen"]
    python = cmmi_build["venv"] / "bin" / "python"
    code = "import sys; sys.path.insert(0, %r); %s" % (str(u / "develop-eggs" / egg_name()), CALL)
    proc = run([python, "-c", code], check=False)
    assert proc.returncode != 0
    assert "libbbdemo.so: cannot open shared object file" in proc.stderr, proc.stderr


def test_rewritten_entry_is_origin_relative_and_readelf_agrees(cmmi_build):
    b, rel = cmmi_build["b"], cmmi_build["ext_rel"]
    after = readelf_paths(b / rel)
    (tag, old), = cmmi_build["before"].items()
    new = after[tag]
    assert "$ORIGIN/../../parts/bbdemo/lib" in new.split(":")
    assert str(cmmi_build["a"]) not in new
    # bbrun's report says exactly what readelf sees.
    notes = cmmi_build["report"]["notes"]
    assert "%s: %s %s -> %s" % (rel, tag, old, new) in notes, notes
    entries = cmmi_build["report"]["files"]["elf"]
    assert {"path": str(rel), "kind": "elf", "action": "rpath-relativized"} in entries
    if cmmi_build["short"]:
        assert len(new) > len(old), (old, new)
    # Entries outside the tree (the interpreter's own lib dir, if
    # setuptools added it) are kept and reported.
    for entry in old.split(":"):
        if not entry.startswith(str(cmmi_build["a"])):
            assert entry in new.split(":")
            assert any(entry in n and "outside the tree; kept" in n for n in notes)


def test_dry_run_reports_the_same_rewrite(cmmi_build):
    rel = str(cmmi_build["ext_rel"])
    assert any(n.startswith(rel + ": would rewrite") for n in cmmi_build["dry"]["notes"])
    assert cmmi_build["dry"]["dry_run"] is True


def tree_files(root):
    """tree_digest without bbrun's own state (freeze rewrites its map)."""
    return {k: v for k, v in tree_digest(root).items() if not k.startswith(".bbrun/")}


def test_second_freeze_changes_nothing(cmmi_build, bbrun, tmp_path):
    b = copy_tree(cmmi_build["b"], tmp_path / "again")
    before = tree_files(b)
    report = json.loads(run([bbrun, "freeze", "--json", b]).stdout)
    assert tree_files(b) == before
    assert not [n for n in report["notes"] if "->" in n], report["notes"]
    entries = report["files"]["elf"]
    rel = str(cmmi_build["ext_rel"])
    assert {"path": rel, "kind": "elf", "action": "rpath-relativized"} in entries
    out = run([bbrun, b / "bin" / "py", "-c", CALL]).stdout.split()
    assert out[0] == "41"


# --- real manylinux wheels ---------------------------------------------


@pytest.fixture(scope="session")
def set_search_path_tool():
    """bbrun-elf's test helper that sets a search path in place."""
    run(["cargo", "build", "-q", "-p", "bbrun-elf", "--example", "set_search_path"], cwd=REPO)
    return cargo_out("debug") / "examples" / "set_search_path"


def test_patched_manylinux_extensions_import_after_freeze_and_move(
    tmp_path, dists, bbrun, set_search_path_tool
):
    # The wheels carry no search path; give each extension module of
    # BTrees and zope.interface one into the tree (long ones force the
    # grown string table), then freeze, move and import them all.
    venv = tmp_path / "venv"
    make_venv(venv, dists)
    a = tmp_path / "a"
    build_buildout(a, venv, dists)
    mods = [p for p in elf_files(a / "eggs") if "BTrees" in str(p) or "zope.interface" in str(p)]
    assert len(mods) > 10
    for i, m in enumerate(mods):
        value = str(m.parent) if i % 2 else str(a / "parts" / ("deep/" * 12) / "lib")
        run([set_search_path_tool, m, "runpath", value])
    report = json.loads(run([bbrun, "freeze", "--json", a]).stdout)
    b = tmp_path / "b"
    shutil.move(str(a), str(b))
    shutil.rmtree(venv)
    relativized = {e["path"] for e in report["files"]["elf"] if e["action"] == "rpath-relativized"}
    assert relativized == {str(m.relative_to(a)) for m in mods}
    for m in mods:
        value = readelf_paths(b / m.relative_to(a))["RUNPATH"]
        assert value.startswith("$ORIGIN"), value
    code = (
        "import BTrees.OOBTree, BTrees.IIBTree, BTrees.LOBTree, BTrees.fsBTree, zope.interface;"
        "import zope.interface._zope_interface_coptimizations as c;"
        "t = BTrees.OOBTree.OOBTree({'b': 2, 'a': 1}); print(list(t.keys()), c.__file__)"
    )
    out = run([bbrun, b / "bin" / "py", "-c", code]).stdout
    assert out.startswith("['a', 'b'] " + str(b))


def test_frozen_sample_extensions_load_from_the_moved_tree(frozen_sample, bbrun, tmp_path):
    b = copy_tree(frozen_sample["pristine"], tmp_path / "b")
    out = json.loads(run([bbrun, b / "bin" / "demo"]).stdout)
    assert out["zope_interface_c"].startswith(str(b) + "/")
    assert out["btrees_c"] == "BTrees.OOBTree"
    # Nothing native was refused or left broken by the freeze.
    assert not [n for n in frozen_sample["freeze_report"]["notes"] if "not rewritten" in n]


# --- policies and malformed input --------------------------------------


def compile_so(path, rpath, new_dtags=True):
    src = path.with_suffix(".c")
    src.write_text("int f(void) { return 1; }\n")
    flag = "--enable-new-dtags" if new_dtags else "--disable-new-dtags"
    run(["cc", "-shared", "-fPIC", "-o", path, src, "-Wl,-rpath," + rpath, "-Wl," + flag])
    src.unlink()


def test_external_rpath_policies(frozen_sample, bbrun, tmp_path):
    b = copy_tree(frozen_sample["pristine"], tmp_path / "b")
    (b / "parts" / "x" / "lib").mkdir(parents=True)
    so = b / "parts" / "x" / "lib" / "libx.so"
    compile_so(so, "/opt/nowhere/lib:%s/parts/y/lib" % b, new_dtags=False)
    original = so.read_bytes()

    proc = run([bbrun, "freeze", "--external-rpath", "error", b], check=False)
    assert proc.returncode != 0
    assert "parts/x/lib/libx.so (RPATH /opt/nowhere/lib)" in proc.stderr
    assert so.read_bytes() == original, "error policy must write nothing"

    report = json.loads(run([bbrun, "freeze", "--json", b]).stdout)
    assert readelf_paths(so) == {"RPATH": "/opt/nowhere/lib:$ORIGIN/../../y/lib"}
    assert any("/opt/nowhere/lib is outside the tree; kept" in n for n in report["notes"])

    run([bbrun, "freeze", "--external-rpath", "drop", b])
    assert readelf_paths(so) == {"RPATH": "$ORIGIN/../../y/lib"}


def test_malformed_elf_files_are_reported_and_left_alone(frozen_sample, bbrun, tmp_path):
    b = copy_tree(frozen_sample["pristine"], tmp_path / "b")
    junk = b / "parts" / "junk"
    junk.mkdir(parents=True)
    real = next(p for p in elf_files(b / "eggs"))
    data = real.read_bytes()
    (junk / "truncated.so").write_bytes(data[:300])
    (junk / "garbage.so").write_bytes(b"\x7fELF" + bytes((i * 37 + 11) % 256 for i in range(4000)))
    (junk / "empty.so").write_bytes(b"")
    (junk / "headers-only").write_bytes(data[:64])
    before = {p.name: sha(p) for p in junk.iterdir()}

    report = json.loads(run([bbrun, "freeze", "--json", b]).stdout)
    assert {p.name: sha(p) for p in junk.iterdir()} == before
    notes = "\n".join(report["notes"])
    for name in before:
        assert "parts/junk/%s: not rewritten: " % name in notes, notes
    assert "parts/junk/truncated.so: not rewritten: truncated" in notes
    assert "parts/junk/empty.so: not rewritten: named like a shared library but not an ELF file (0 bytes)" in notes
    # The tree still runs.
    out = json.loads(run([bbrun, b / "bin" / "demo"]).stdout)
    assert out["keys"] == ["a", "b"]
