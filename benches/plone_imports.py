"""Import benchmark on the frozen Plone 6 tree (227 eggs, 228 sys.path
entries): `bin/zopepy -c "import Products.CMFPlone"` in place (the tree at
its build root A, run directly) against a copy at B run through bbrun with
the import index (and without it: BBRUN_NO_INDEX=1). Same run,
interleaved, medians; file-system syscalls counted with `strace -f -c`.

    bash benches/plone_imports.sh [RUNS]      # RUNS default 10

Reads the cached tree of benches/plone_tree.py (target/bench-cache/plone)
and never writes there: `pristine` is copied to target/bench-plone-imports
(once per frozen tree), and for the in-place runs that copy is also
bind-mounted at A inside a private mount namespace (plone_imports.sh runs
this under `unshare -m`): A exists for this process only, only while the
in-place runs need it, and both variants read the same files.
The copy keeps the index `pristine` was frozen with. Its shim is replaced
by this checkout's (shim/*.py, byte-compiled as freeze does), so the bbrun
built from it runs the copy as one it froze itself; any other binary
(BASELINE) finds the tree's shim foreign and runs a cache copy, which it
compiles at every launch (a few ms more).

The import is also run, in place, with every egg merged into one
directory (the issue's yardstick, imports.merge_eggs): no finder can do
better than one directory to search.

BASELINE=path/to/other/bbrun adds the copy run by that binary, so a
before/after comparison shares one run. PLONE_START=1 adds a site's start
(`bin/instance run` of an empty script: the configuration, every
package's ZCML, the copy's own database), half as many runs (~3 s each).
Prints ratios; never asserts.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import TARGET  # noqa: E402
from imports import merge_eggs, timed  # noqa: E402  (this directory: the Zope import bench)

ROOT = Path(__file__).resolve().parent.parent
CACHE = TARGET / "bench-cache" / "plone"
WORK = TARGET / "bench-plone-imports"
IMPORT = "import Products.CMFPlone"
SYSCALLS = ("newfstatat", "statx", "openat", "getdents64")


def syscalls(cmd, env):
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        trace = ["strace", "-f", "-c", "-e", "trace=" + ",".join(SYSCALLS), "-o", out.name]
        subprocess.run(trace + [str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL, env=env)
        counts = dict.fromkeys(SYSCALLS, 0)
        for line in out.read().splitlines():
            parts = line.split()
            if parts and parts[-1] in counts and parts[0][0].isdigit():
                counts[parts[-1]] = int(parts[3])
    return counts


def copy(stamp):
    """WORK/b: a copy of pristine, made again when pristine changed."""
    mine = WORK / "tree.json"
    if mine.exists() and mine.read_text() == stamp:
        return WORK / "b"
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(CACHE / "pristine"), str(WORK / "b")], check=True)
    mine.write_text(stamp)
    return WORK / "b"


def own_shim(tree):
    """Put this checkout's shim into `tree`, as `bbrun freeze` writes it."""
    shim = tree / ".bbrun" / "shim"
    # Every module of shim/, as the binary embeds them all (shim::FILES).
    names = sorted(p.name for p in (ROOT / "shim").glob("*.py"))
    for name in names:
        shutil.copyfile(ROOT / "shim" / name, shim / name)
    shutil.rmtree(shim / "__pycache__", ignore_errors=True)
    code = (
        "import py_compile, sys\n"
        "for f in sys.argv[1:]:\n"
        "    py_compile.compile(f, doraise=True, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)"
    )
    subprocess.run([sys.executable, "-S", "-E", "-s", "-c", code] + [str(shim / n) for n in names], check=True)
    for p in [shim / "__pycache__"] + list((shim / "__pycache__").iterdir()):
        p.chmod(p.stat().st_mode & ~0o022)


def merged_zopepy(b, build_root):
    """bin/zopepy with every egg merged into one directory (the issue's
    yardstick, `merge_eggs`), made once per copy; run in place, at A."""
    script = WORK / "merged" / "zopepy"
    if not script.exists():
        text = merge_eggs(
            (b / "bin" / "zopepy").read_text(),
            WORK / "merged" / "site",
            source=lambda path: str(b / Path(path).relative_to(build_root)),
        )
        script.write_text(text)
        script.chmod(0o755)
    return script


def main():
    bbrun = Path(sys.argv[1]).resolve()
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    baseline = os.environ.get("BASELINE")
    stamp = (CACHE / "tree.json").read_text()
    info = json.loads(stamp)
    b = copy(stamp)
    own_shim(b)
    build_root = Path(info["build_root"])
    merged = merged_zopepy(b, build_root)
    # Only in this mount namespace: an empty tmpfs over the cache directory
    # holding A's mount point, then A mounted or not as each run needs.
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "none", str(CACHE)], check=True)
    build_root.mkdir(parents=True)

    def place(a_there):
        mounted = os.path.ismount(build_root)
        if a_there and not mounted:
            subprocess.run(["mount", "--bind", str(b), str(build_root)], check=True)
        elif not a_there and mounted:
            subprocess.run(["umount", str(build_root)], check=True)

    env = dict(os.environ)
    env.pop("BBRUN_NO_INDEX", None)
    off = dict(env, BBRUN_NO_INDEX="1")
    yardstick = {"A, eggs merged": (True, [merged, "-c", IMPORT], env)}
    cases = [(IMPORT, ["bin/zopepy", "-c", IMPORT], runs, yardstick)]
    if os.environ.get("PLONE_START"):
        # A site's start: Zope's configuration, every package's ZCML, the
        # database opened (the copy's own var/), then an empty script.
        empty = WORK / "empty.py"
        empty.write_text("")
        cases.append(("site start: bin/instance run EMPTY", ["bin/instance", "run", empty], max(3, runs // 2), {}))
    print("Plone 6 tree (%d eggs, %d sys.path entries), medians of interleaved runs"
          % (info["eggs"], info["sys_path"]))
    print("load average: %.2f %.2f %.2f" % os.getloadavg())
    for title, argv, n, extra in cases:
        script, args = argv[0], argv[1:]
        variants = {
            "A in place, direct": (True, [build_root / script] + args, env),
            "B, bbrun + index": (False, [bbrun, b / script] + args, env),
            "B, bbrun, no index": (False, [bbrun, b / script] + args, off),
        }
        if baseline:
            variants["B, baseline + index"] = (False, [baseline, b / script] + args, env)
        variants.update(extra)
        measure(title, variants, n, place)
    place(False)


def measure(title, variants, runs, place):
    counts, samples, cpu = {}, {k: [] for k in variants}, {k: [] for k in variants}
    for k, (a_there, cmd, e) in variants.items():
        place(a_there)
        timed(cmd, e)  # warms the caches; a launcher's first run in a new place does more
    for k, (a_there, cmd, e) in variants.items():
        place(a_there)
        counts[k] = syscalls(cmd, e)
    for _ in range(runs):
        for k, (a_there, cmd, e) in variants.items():
            place(a_there)
            wall, used = timed(cmd, e)
            samples[k].append(wall)
            cpu[k].append(used)
    base = statistics.median(samples["A in place, direct"])
    cpu_base = statistics.median(cpu["A in place, direct"])
    base_calls = sum(counts["A in place, direct"].values())
    print()
    print("`%s`, %d runs" % (title, runs))
    print("%-22s %9s %7s %9s %7s %8s  %s" % ("variant", "wall", "ratio", "CPU", "ratio", "fs calls", " ".join(SYSCALLS)))
    for k, s in samples.items():
        med, cmed = statistics.median(s), statistics.median(cpu[k])
        c = counts[k]
        print("%-22s %7.0fms %6.3fx %7.0fms %6.3fx %7.3fx  %s" % (
            k, med * 1000, med / base, cmed * 1000, cmed / cpu_base, sum(c.values()) / base_calls,
            " ".join(str(c[n]) for n in SYSCALLS)))


if __name__ == "__main__":
    main()
