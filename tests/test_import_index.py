"""The import index (freeze records where every importable name lives; the
shim answers imports from it): same specs as the normal search, and never a
stale answer after the tree changed."""

import json
import os
import shutil
import sys

import pytest

from conftest import copy_tree, run

# Runs inside bin/py (the script's own sys.path): every top-level name any
# sys.path directory offers, and one level below each namespace package,
# resolved with importlib.util.find_spec; plus which finder serves each entry.
PROBE = r"""
import importlib.util, json, os, sys

def names_in(d):
    out = set()
    try:
        listing = os.listdir(d)
    except OSError:
        return out
    for n in listing:
        base = n.split(".")[0]
        if base.isidentifier():
            out.add(base)
    return out

def describe(spec):
    if spec is None:
        return None
    locs = spec.submodule_search_locations
    # `cached` too: the index fills it in itself, as ModuleSpec would.
    return [spec.origin, None if locs is None else list(locs), type(spec.loader).__name__, spec.cached]

specs = {}
names = set()
for entry in list(sys.path):
    names |= names_in(entry or ".")
for name in sorted(names):
    try:
        spec = importlib.util.find_spec(name)
    except Exception as e:
        specs[name] = "error: %s" % type(e).__name__
        continue
    specs[name] = describe(spec)
    if spec is not None and (spec.loader is None or type(spec.loader).__name__ == "NamespaceLoader"):
        for loc in spec.submodule_search_locations:
            for sub in sorted(names_in(loc)):
                full = name + "." + sub
                specs[full] = describe(importlib.util.find_spec(full))
finders = {e: type(sys.path_importer_cache.get(e)).__name__ for e in sys.path}
PATH_LOADERS = ("SourceFileLoader", "SourcelessFileLoader", "ExtensionFileLoader", "NamespaceLoader", "NoneType")
# What the merged meta-path finder itself answers for each top-level name
# (None: it left the name to PathFinder), for the names the path search
# serves (not builtins, frozen modules, setuptools' distutils shim).
merged = [f for f in sys.meta_path if type(f).__name__ == "type" and f.__name__ == "MergedFinder"]
answered = {}
if merged:
    for name in sorted(n for n in specs if "." not in n):
        if specs[name] is None or specs[name][2] in PATH_LOADERS:
            answered[name] = describe(merged[0].find_spec(name))
# A regular package's submodules, searched in its one directory: what the
# merged finder answers (None: left to PathFinder) against PathFinder's own
# answer, without importing anything.
def guarded(find, name, path):
    # PathFinder's namespace spec wants the parent package imported.
    try:
        return describe(find(name, path))
    except Exception as e:
        return "error: %s" % type(e).__name__

single = {}
if merged:
    from importlib.machinery import PathFinder
    for name in sorted(n for n in specs if "." not in n):
        d = specs[name]
        if d and d[1] and len(d[1]) == 1 and d[2] == "SourceFileLoader":
            for sub in sorted(names_in(d[1][0]) - {"__init__", "__main__"}):
                full = name + "." + sub
                its = guarded(PathFinder.find_spec, full, list(d[1]))
                mine = guarded(merged[0].find_spec, full, list(d[1]))
                single[full] = [mine, its, type(sys.path_importer_cache.get(d[1][0])).__name__]
print(json.dumps({"specs": specs, "finders": finders, "merged": answered, "single": single}))
"""

# The merged finder under run-time changes, in one process: a name written
# into an indexed directory after the table was built, sys.path changed
# (an entry put first that shadows an egg's package, one appended, one
# removed), a new module in a directory that is searched live.
RUNTIME_PROBE = r"""
import importlib, importlib.util, json, os, sys

def origin(name):
    spec = importlib.util.find_spec(name)
    return None if spec is None else spec.origin

out = {}
# `import json` above went through the merged finder: its table is built.
egg = os.path.dirname(os.path.dirname(origin("BTrees")))
out["json"] = origin("json")
out["zope"] = origin("zope")
extra = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "extra")
os.mkdir(extra)
for name in ("BTrees.py", "only_here.py"):
    with open(os.path.join(extra, name), "w") as f:
        f.write("")
sys.path.insert(0, extra)
out["shadowed"] = origin("BTrees")
out["only_here first"] = origin("only_here")
sys.path.remove(extra)
out["unshadowed"] = origin("BTrees")
out["only_here gone"] = origin("only_here")
sys.path.append(extra)
out["only_here appended"] = origin("only_here")
out["BTrees appended"] = origin("BTrees")
# Written into a directory searched live after it was searched.
with open(os.path.join(extra, "written_live.py"), "w") as f:
    f.write("")
out["written live"] = origin("written_live")
# Written into an indexed egg after the table was built: found once the
# program says so (importlib.invalidate_caches(), as Python asks).
with open(os.path.join(egg, "written_late.py"), "w") as f:
    f.write("")
importlib.invalidate_caches()
out["written late"] = origin("written_late")
out["json after"] = origin("json")
merged = [f for f in sys.meta_path if getattr(f, "__name__", "") == "MergedFinder"]
print(json.dumps(out))
print(json.dumps({"merged": bool(merged), "off after invalidate_caches": bool(merged and merged[0]._off)}))
"""


@pytest.fixture
def moved(frozen_sample, tmp_path):
    return copy_tree(frozen_sample["pristine"], tmp_path / "b")


def probe(bbrun, root, tmp_path, no_index=False):
    script = tmp_path / "probe_specs.py"
    script.write_text(PROBE)
    return run_probe([bbrun, root / "bin" / "py", script], no_index)


def run_probe(cmd, no_index):
    env = dict(os.environ)
    env.pop("BBRUN_NO_INDEX", None)
    if no_index:
        env["BBRUN_NO_INDEX"] = "1"
    return json.loads(run(cmd, env=env).stdout)


def assert_same_specs(root, with_index, without):
    # The index was really used for the eggs, and really off without it.
    eggs = egg_entries(root, with_index["finders"])
    assert eggs and all(with_index["finders"][e] == "IndexedFinder" for e in eggs)
    assert "IndexedFinder" not in without["finders"].values()
    assert not without["merged"]
    assert len(with_index["specs"]) > 50
    diff = {k: (v, without["specs"].get(k)) for k, v in with_index["specs"].items() if without["specs"].get(k) != v}
    assert not diff
    assert with_index["specs"] == without["specs"]
    # What the merged finder answers is what the full search finds, and it
    # answers the bulk: eggs' packages and the standard library after them.
    merged = with_index["merged"]
    assert merged
    wrong = {k: (v, without["specs"][k]) for k, v in merged.items() if v is not None and v != without["specs"][k]}
    assert not wrong
    assert merged["json"] and merged["json"] == without["specs"]["json"]
    assert merged["BTrees"] and merged["BTrees"][0].startswith(str(root) + "/")
    assert merged["zope"] is None  # a namespace package: left to PathFinder
    regular = [k for k, v in without["specs"].items() if k in merged and v and v[0]]
    assert sum(merged[k] is not None for k in regular) > 0.9 * len(regular)
    # Submodules of single-directory packages: the same spec as PathFinder's,
    # and answered by the merged finder whenever PathFinder finds a loader.
    single = with_index["single"]
    assert len(single) > 20
    wrong = {k: v for k, v in single.items() if v[0] is not None and v[0] != v[1]}
    assert not wrong
    found = [k for k, (_, its, finder) in single.items()
             if finder == "IndexedFinder" and isinstance(its, list) and its[2] != "NoneType"]
    assert len(found) > 20
    left = [k for k in found if single[k][0] is None]
    assert not left


def egg_entries(root, finders):
    return [e for e in finders if e.startswith(str(root / "eggs") + "/")]


def test_index_written_by_freeze(moved):
    text = (moved / ".bbrun" / "index" / "dirs.txt").read_text()
    lines = text.splitlines()
    assert lines[0] == "bbrun-import-index 1"
    rels = [line.split("\t")[0] for line in lines[1:]]
    assert "src/demoapp" in rels  # the develop egg
    assert "bin" in rels  # the scripts' directory: sys.path[0] when they run
    assert any(r.startswith("eggs/") and r.endswith("/BTrees") for r in rels)  # a package below an egg
    assert not any(r.startswith("/") for r in rels)  # relative: a moved tree still uses it


def test_same_specs_with_and_without_index(moved, bbrun, tmp_path):
    with_index = probe(bbrun, moved, tmp_path)
    without = probe(bbrun, moved, tmp_path, no_index=True)
    assert_same_specs(moved, with_index, without)
    # The script's own directory, first on sys.path, is indexed too: else
    # every top-level import would search it live before any egg. (The Zope
    # test below writes its probe into bin/: there bin/ is searched live.)
    assert with_index["finders"][str(moved / "bin")] == "IndexedFinder"
    for name in ("BTrees", "zope.interface", "demoapp"):
        assert with_index["specs"][name][0].startswith(str(moved) + "/"), name
    # Byte-code paths were compared above; a source module's is the tree's.
    assert with_index["specs"]["demoapp"][3].startswith(str(moved / "src" / "demoapp") + "/")
    assert "/__pycache__/" in with_index["specs"]["demoapp"][3]


def test_merged_finder_follows_run_time_changes(moved, bbrun, tmp_path):
    """sys.path changed at run time, modules written after the table was
    built: the same answers with the merged table as without the index."""
    script = tmp_path / "runtime_probe.py"
    script.write_text(RUNTIME_PROBE)
    results = []
    env = dict(os.environ)
    for no_index in ("", "1"):
        shutil.rmtree(tmp_path / "extra", ignore_errors=True)
        for egg in (moved / "eggs").glob("*/BTrees-*"):
            (egg / "written_late.py").unlink(missing_ok=True)
        env["BBRUN_NO_INDEX"] = no_index
        lines = run([bbrun, moved / "bin" / "py", script], env=env).stdout.splitlines()
        results.append([json.loads(line) for line in lines])
    (got, finder), (want, no_finder) = results
    assert finder == {"merged": True, "off after invalidate_caches": True}
    assert no_finder == {"merged": False, "off after invalidate_caches": False}
    assert got == want
    extra = str(tmp_path / "extra")
    assert got["json"].endswith("/json/__init__.py")
    assert got["zope"] is None  # a namespace package: no file
    assert got["shadowed"] == extra + "/BTrees.py"
    assert got["only_here first"] == extra + "/only_here.py"
    assert got["unshadowed"].endswith("/BTrees/__init__.py")
    assert got["only_here gone"] is None
    assert got["only_here appended"] == extra + "/only_here.py"
    assert got["BTrees appended"] == got["unshadowed"]
    assert got["written live"] == extra + "/written_live.py"
    assert got["written late"].endswith("/written_late.py")
    assert got["json after"] == got["json"]


def test_module_added_after_freeze_is_found(moved, bbrun):
    egg = next((moved / "eggs" / "v5").glob("BTrees-*"))
    (egg / "added_after_freeze.py").write_text("X = 1\n")
    code = "import added_after_freeze, sys; print(added_after_freeze.__file__); print(type(sys.path_importer_cache[%r]).__name__)" % str(egg)
    lines = run([bbrun, moved / "bin" / "py", "-c", code]).stdout.splitlines()
    assert lines[0] == str(egg / "added_after_freeze.py")
    # The changed directory is searched the normal way.
    assert lines[1] == "FileFinder"


def test_module_removed_after_freeze_is_not_found(moved, bbrun, tmp_path):
    egg = next((moved / "eggs" / "v5").glob("BTrees-*"))
    shutil.rmtree(egg / "BTrees")
    # A package that lost its __init__.py (its parent's mtime is unchanged)
    # becomes a namespace portion, as it would in place.
    zi = next((moved / "eggs" / "v5").glob("zope.interface-*"))
    init = zi / "zope" / "interface" / "__init__.py"
    init.unlink()
    code = (
        "import importlib.util, json\n"
        "out = {}\n"
        "for n in ('BTrees', 'zope.interface'):\n"
        "    s = importlib.util.find_spec(n)\n"
        "    out[n] = s and [s.origin, list(s.submodule_search_locations or [])]\n"
        "print(json.dumps(out))\n"
    )
    env = dict(os.environ)
    env.pop("BBRUN_NO_INDEX", None)
    got = json.loads(run([bbrun, moved / "bin" / "py", "-c", code], env=env).stdout)
    env["BBRUN_NO_INDEX"] = "1"
    want = json.loads(run([bbrun, moved / "bin" / "py", "-c", code], env=env).stdout)
    assert got == want
    assert got["BTrees"] is None
    assert got["zope.interface"][0] is None  # namespace: no origin file


def test_site_packages_of_a_virtualenv_tree_is_served_by_the_index(dists, bbrun, tmp_path):
    # site adds a venv's site-packages, and importing sitecustomize makes
    # its finder, before the shim installs the index's hook: that plain
    # finder must not stay cached, or the index never serves the venv.
    from conftest import make_venv

    venv = tmp_path / "a" / "venv"
    make_venv(venv, dists, packages=("BTrees",))
    show = venv / "bin" / "show"
    show.write_text(
        "#!%s\nimport json, sys, BTrees, site\n"
        "sp = site.getsitepackages()[0]\n"
        "print(json.dumps([type(sys.path_importer_cache[sp]).__name__, BTrees.__file__]))\n" % (venv / "bin" / "python")
    )
    show.chmod(0o755)
    run([bbrun, "freeze", venv])
    dest = tmp_path / "b"
    os.rename(venv, dest)
    env = {k: v for k, v in os.environ.items() if k != "BBRUN_NO_INDEX"}
    finder, btrees = json.loads(run([bbrun, dest / "bin" / "show"], env=env).stdout)
    assert finder == "IndexedFinder"
    plain, plain_btrees = json.loads(run([bbrun, dest / "bin" / "show"], env=dict(env, BBRUN_NO_INDEX="1")).stdout)
    assert plain == "FileFinder"
    assert btrees == plain_btrees and btrees.startswith(str(dest) + "/")


def test_same_specs_on_the_zope_buildout(frozen_zope, bbrun, tmp_path):
    """Every top-level name (and every name one level into a namespace
    package: zope.*, Products.*) on bin/instance's 80-egg sys.path."""
    root = copy_tree(frozen_zope["pristine"], tmp_path / "z")
    lines = (root / "bin" / "instance").read_text().splitlines(True)
    head = lines[: next(i for i, line in enumerate(lines) if line.strip() == "]") + 1]
    script = root / "bin" / "probe-specs"
    script.write_text("".join(head) + PROBE)
    script.chmod(0o755)
    with_index = run_probe([bbrun, script], no_index=False)
    without = run_probe([bbrun, script], no_index=True)
    assert len(egg_entries(root, with_index["finders"])) > 70
    assert "zope.interface" in with_index["specs"] and "Products.PageTemplates" in with_index["specs"]
    assert_same_specs(root, with_index, without)


def test_index_still_used_after_pack_and_install(moved, bbrun, tmp_path):
    """An archive keeps directory mtimes (whole seconds) and install puts
    them back, so the installed tree still uses the index."""
    archive = tmp_path / "sample.tar.zst"
    run([bbrun, "pack", moved, "--format", "tar.zst", "-o", archive])
    dest = tmp_path / "installed"
    run([bbrun, "install", archive, dest])
    egg = next((dest / "eggs" / "v5").glob("BTrees-*"))
    code = "import sys, BTrees; print(BTrees.__file__); print(type(sys.path_importer_cache[%r]).__name__)" % str(egg)
    lines = run([bbrun, dest / "bin" / "py", "-c", code]).stdout.splitlines()
    assert lines[0] == str(egg / "BTrees" / "__init__.py")
    assert lines[1] == "IndexedFinder"
    run([bbrun, "verify", dest])


# Runs with ~150 more directories on sys.path: each lookup's result and how
# many directories it listed (importlib.metadata, and its backport, list
# through os.listdir). argv: the directories' parent, the metadata module,
# a distribution the tree has, the directory to write a distribution into.
# The directory the probe writes a distribution into, late on the path.
WRITTEN_INTO = "d147"
METADATA_PROBE = r"""
import importlib, json, os, sys
extra, module, installed, written = sys.argv[1:5]
md = importlib.import_module(module)
dirs = sorted(os.path.join(extra, n) for n in os.listdir(extra))
sys.path.extend(dirs)
listed = []
real = os.listdir
def counting(path="."):
    listed.append(path)
    return real(path)
os.listdir = counting
def find(name):
    before = len(listed)
    try:
        found = str(md.distribution(name)._path)
    except md.PackageNotFoundError:
        found = None
    return [found, len(listed) - before]
# An entry that is not there is asked again at every lookup (the stdlib
# keeps no listing of it).
out = {"path": len(sys.path), "missing": sum(not os.path.isdir(p) for p in sys.path)}
out["first"] = find("no-such-dist")
out["again"] = find("no-such-dist")
out["late"] = find("late-dist")
out["installed"] = find(installed)
# Written now: its directory's mtime changed, so that directory is listed
# again and the new distribution found.
made = os.path.join(extra, written, "written_now-2.0.dist-info")
os.mkdir(made)
with open(os.path.join(made, "METADATA"), "w") as f:
    f.write("Metadata-Version: 2.1\nName: written-now\nVersion: 2.0\n")
out["written now"] = find("written-now")
os.listdir = real
out["all"] = [[d.metadata["Name"], str(d._path)] for d in md.distributions()]
out["entry points"] = [[ep.group, ep.name, ep.value] for d in md.distributions() for ep in d.entry_points]
print(json.dumps(out))
"""


def metadata_lookups(cmd, module, installed, tmp_path):
    """The probe's output run by `cmd` (+ probe arguments) with the index,
    then without it; and `extra`, the parent of the 150 directories added
    to the path (d140 holds a distribution, the probe writes one into
    WRITTEN_INTO)."""
    extra = tmp_path / "extra"
    for i in range(150):
        (extra / ("d%03d" % i)).mkdir(parents=True)
    late = extra / "d140" / "late_dist-1.0.dist-info"
    late.mkdir()
    (late / "METADATA").write_text("Metadata-Version: 2.1\nName: late-dist\nVersion: 1.0\n")
    (late / "entry_points.txt").write_text("[console_scripts]\nlate = late_dist:main\n")
    script = tmp_path / "metadata_probe.py"
    script.write_text(METADATA_PROBE)
    results = []
    for no_index in (False, True):
        shutil.rmtree(extra / WRITTEN_INTO / "written_now-2.0.dist-info", ignore_errors=True)
        env = {k: v for k, v in os.environ.items() if k != "BBRUN_NO_INDEX"}
        if no_index:
            env["BBRUN_NO_INDEX"] = "1"
        results.append(json.loads(run(cmd + [script, extra, module, installed, WRITTEN_INTO], env=env).stdout))
    got, want = results
    return got, want, extra


def assert_listings_reused(got, want, extra, root):
    assert got["path"] > 128
    # Same answers as the stdlib's own search.
    for step in ("first", "again", "late", "installed", "written now"):
        assert got[step][0] == want[step][0], step
    assert got["all"] == want["all"] and got["entry points"] == want["entry points"]
    assert got["late"][0] == str(extra / "d140" / "late_dist-1.0.dist-info")
    assert got["installed"][0] is not None and got["installed"][0].startswith(str(root) + "/")
    assert got["written now"][0] == str(extra / WRITTEN_INTO / "written_now-2.0.dist-info")
    assert ["console_scripts", "late", "late_dist:main"] in got["entry points"]
    # The first lookup lists every directory, as the stdlib does; the
    # stdlib lists them all again at the next one, bbrun only what it must.
    assert got["first"][1] == want["first"][1] >= got["path"]
    assert want["again"][1] > 128
    missing = got["missing"]
    assert got["again"][1] == got["late"][1] == missing < 5
    assert got["installed"][1] <= missing  # found before the search got that far
    assert got["written now"][1] == missing + 1


def test_metadata_lookups_on_a_long_path_reuse_directory_listings(moved, bbrun, tmp_path):
    """importlib.metadata keeps 128 directory listings; on a longer path
    each lookup evicts them all and lists every directory again. Through
    bbrun the cache fits the path: later lookups list nothing unchanged,
    a directory changed since is listed again, and every answer is the
    one the unchanged stdlib gives."""
    cmd = [bbrun, moved / "bin" / "py"]
    got, want, extra = metadata_lookups(cmd, "importlib.metadata", "BTrees", tmp_path)
    assert_listings_reused(got, want, extra, moved)


def test_metadata_backport_lookups_reuse_directory_listings(dists, bbrun, tmp_path):
    """The same with the importlib_metadata backport (which takes over
    from the stdlib's finder), in a frozen virtualenv."""
    from conftest import make_venv

    venv = tmp_path / "a" / "venv"
    make_venv(venv, dists, packages=("importlib_metadata",))
    run([bbrun, "freeze", venv])
    dest = tmp_path / "b"
    os.rename(venv, dest)
    cmd = [bbrun, dest / "bin" / "python"]
    got, want, extra = metadata_lookups(cmd, "importlib_metadata", "zipp", tmp_path)
    assert_listings_reused(got, want, extra, dest)


# Every `.py` of every directory the index lists, and whether its .pyc (at
# the -O level 0 name) is the one the import system would accept.
PYC_CHECK = r"""
import importlib.util, json, os, sys
root = sys.argv[1]
bad = []
count = 0
for line in open(os.path.join(root, ".bbrun", "index", "dirs.txt")).read().splitlines()[1:]:
    d = os.path.join(root, line.split("\t")[0])
    for n in os.listdir(d):
        if not n.endswith(".py"):
            continue
        src = os.path.join(d, n)
        count += 1
        try:
            with open(importlib.util.cache_from_source(src), "rb") as f:
                head = f.read(16)
        except OSError:
            bad.append(src)
            continue
        st = os.stat(src)
        if head[:4] != importlib.util.MAGIC_NUMBER or head[4:8] != bytes(4) \
                or int.from_bytes(head[8:12], "little") != int(st.st_mtime) & 0xFFFFFFFF \
                or int.from_bytes(head[12:16], "little") != st.st_size:
            bad.append(src)
print(json.dumps({"count": count, "bad": bad}))
"""


def test_freeze_byte_compiles_what_the_scripts_import(frozen_zope, bbrun, tmp_path):
    """Modules without a current .pyc (wheels zc.buildout installs into
    eggs/ uncompiled, a build with PYTHONDONTWRITEBYTECODE, a source edited
    after its last run) are compiled at freeze: a run that cannot write
    .pyc files compiles nothing of the tree, and no run writes a
    __pycache__ that would turn the index off for its directory."""
    root = copy_tree(frozen_zope["pristine"], tmp_path / "z")
    run([bbrun, "relocate", root])
    eggs = root / "eggs" / "v5"
    for pattern in ("multipart-*", "zope.interface-*", "Zope-*"):
        for cache in next(eggs.glob(pattern)).rglob("__pycache__"):
            shutil.rmtree(cache)
    # A source changed since its .pyc was written: the .pyc is stale.
    edited = next(eggs.glob("ZPublisher-*"), None) or next(eggs.glob("Zope-*"))
    mod = next(p for p in edited.rglob("*.py") if p.stat().st_size > 100)
    mod.write_text(mod.read_text() + "\n# edited\n")
    check = tmp_path / "pyc_check.py"
    check.write_text(PYC_CHECK)
    python = sys.executable  # the tests' Python: the tree's version
    before = json.loads(run([python, check, root]).stdout)
    assert len(before["bad"]) > 50  # what this test removed (and the edit)
    proc = run([bbrun, "freeze", root])
    assert "byte-compiled" in proc.stdout + proc.stderr
    # Refrozen where the build venv is gone: the interpreter the launcher
    # runs compiles, the shim too.
    assert "could not" not in proc.stdout + proc.stderr
    after = json.loads(run([python, check, root]).stdout)
    assert after["count"] == before["count"] > 1000
    # A source that does not compile (Zope's test fixture error.py) keeps
    # no .pyc, as in place; everything else has a current one.
    assert [p for p in after["bad"] if not p.endswith("/fixtures/error.py")] == []
    lines = (root / "bin" / "instance").read_text().splitlines(True)
    head = lines[: next(i for i, line in enumerate(lines) if line.strip() == "]") + 1]
    script = root / "bin" / "stack"
    script.write_text(
        "".join(head)
        + "import multipart, Zope2.Startup.run, OFS.Application, ZPublisher.WSGIPublisher\n"
        + "print(type(sys.path_importer_cache[multipart.__file__.rpartition('/')[0]]).__name__)\n"
    )
    script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "BBRUN_NO_INDEX"}
    proc = run([bbrun, script], env=dict(env, PYTHONDONTWRITEBYTECODE="1", PYTHONVERBOSE="1"))
    compiled = [
        line for line in proc.stderr.splitlines()
        if line.startswith("# code object from ") and line.rstrip("'").endswith(".py") and str(root) in line
    ]
    assert compiled == []
    assert proc.stdout.strip() == "IndexedFinder"
    # Freeze again: nothing left to compile.
    proc = run([bbrun, "freeze", root])
    assert "byte-compiled" not in proc.stdout + proc.stderr



# Every record looked up by bisecting the file, as a process asking for few
# directories does, against the full parse a long import run switches to;
# and names that are not in the index (prefixes, neighbours) are not found.
RECORD_CHECK = r"""
import json, sys
sys.path.insert(0, sys.argv[1] + "/.bbrun/shim")
import bbrun_shim as ix
ix._index_root = sys.argv[1]
rels = [l.split("\t", 1)[0] for l in open(sys.argv[1] + "/.bbrun/index/dirs.txt").read().split("\n")[1:] if l]
absent = set()
for r in rels:
    absent.update((r + "x", r + "/", r[:-1], r + " ", r + "/zz", "0" + r))
absent.difference_update(rels)
absent.update(("", "\udcff", "~"))
ix._BISECT_LOOKUPS = 10 ** 9
bisected = {r: ix._index_record(r) for r in rels + sorted(absent)}
ix._index_lines, ix._index_asked, ix._BISECT_LOOKUPS = None, 0, 0
parsed = {r: ix._index_record(r) for r in rels + sorted(absent)}
print(json.dumps({"rels": len(rels), "same": bisected == parsed,
                  "found": sum(v is not None for v in bisected.values()),
                  "absent found": [r for r in absent if bisected[r] is not None]}))
"""


def test_index_records_by_bisection_match_the_full_parse(moved, tmp_path):
    check = tmp_path / "record_check.py"
    check.write_text(RECORD_CHECK)
    got = json.loads(run([sys.executable, check, moved]).stdout)
    assert got["rels"] > 20
    assert got["found"] == got["rels"]
    assert got["absent found"] == []
    assert got["same"]
