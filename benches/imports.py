"""Import benchmark: a Zope 5 buildout's import stack run in place
(`python bin/py -c IMPORTS`, no bbrun) against the same tree frozen and
moved, run through bbrun with the import index (and, for reference, with
the index turned off: BBRUN_NO_INDEX=1). Same run, interleaved, medians.
Also counts file-system syscalls (stat family + open + getdents) with
`strace -f -c`, the issue's yardstick (the same imports in place with
every egg merged into one directory, `merged_layout`), and the launcher +
shim cost on a script that only sets its 80-entry sys.path. The scripts
are made from bin/instance's first line and sys.path block.

Usage: bash benches/imports.sh [RUNS]   (prints ratios; never asserts)
BASELINE=path/to/other/bbrun adds a column: the moved tree run by that
binary (with its own shim and the index), e.g. the previous commit's, so a
before/after comparison shares one run.

The Zope tree (tests/appserver.py, ~80 eggs) is built once under
target/bench-imports and reused; freeze runs again each time, so the index
is the current bbrun's."""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import TARGET, make_venv, run  # noqa: E402
from appserver import build_zope_buildout, fetch_zope_dists, free_port  # noqa: E402

ZOPE_STACK = (
    "import Zope2.Startup.run, OFS.Application, ZPublisher.WSGIPublisher, "
    "Products.PageTemplates.PageTemplateFile"
)
FS_CALLS = ("stat", "lstat", "fstat", "newfstatat", "statx", "open", "openat", "getdents64")


def timed(cmd, env):
    """(wall, CPU) seconds of `cmd`: CPU time (user + system, from the
    child's rusage) is printed too, being far less sensitive to other load
    on a shared machine."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise subprocess.CalledProcessError(status, cmd)
    return wall, usage.ru_utime + usage.ru_stime


def syscalls(cmd, env):
    """{syscall: count} of the file-system calls `cmd` makes."""
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        subprocess.run(
            ["strace", "-f", "-c", "-e", "trace=" + ",".join(FS_CALLS), "-o", out.name] + cmd,
            check=True,
            stdout=subprocess.DEVNULL,
            env=env,
        )
        counts = {}
        for line in out.read().splitlines():
            parts = line.split()
            if parts and parts[-1] in FS_CALLS and parts[0][0].isdigit():
                # % time, seconds, usecs/call, calls, [errors], syscall
                counts[parts[-1]] = int(parts[3])
        return counts


def build_tree(work, bbrun):
    tree = work / "build" / "zope"
    venv = work / "venv"
    if not (work / ".built").exists():
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        dists = fetch_zope_dists()
        make_venv(venv, dists)
        tree.parent.mkdir()
        build_zope_buildout(tree, venv, dists, free_port())
        (work / ".built").touch()
    # Two scripts with bin/instance's interpreter line and sys.path block:
    # one importing the stack, one doing nothing (the launcher + shim cost).
    lines = (tree / "bin" / "instance").read_text().splitlines(True)
    head = lines[: next(i for i, l in enumerate(lines) if l.strip() == "]") + 1]
    for name, body in (("importstack", ZOPE_STACK + "\n"), ("nothing", "")):
        script = tree / "bin" / name
        script.write_text("".join(head) + "\n" + body)
        script.chmod(0o755)
    run([bbrun, "freeze", tree])
    moved = work / "moved"
    shutil.rmtree(moved, ignore_errors=True)
    run(["cp", "-a", tree, moved])
    return tree, moved, venv / "bin" / "python"


def merge_eggs(script, site, source=lambda path: path):
    """The issue's yardstick: `script` (a buildout script's text) with every
    egg directory of its sys.path block copied into `site`, one directory
    (namespace packages merged, byte-code kept, each EGG-INFO as
    NAME.egg-info so distribution metadata is still found), and the block
    naming `site` instead. One directory to search is the best a finder
    can hope for, so the index against it says what finding still costs.
    `source` maps a path in the script to where its files are read now."""
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir(parents=True)
    lines = script.splitlines(True)
    entries = {l: l.strip().rstrip(",").strip("'") for l in lines if l.startswith("  '")}
    eggs = [l for l, path in entries.items() if path.endswith(".egg") and Path(source(path)).is_dir()]
    for line in eggs:
        egg = Path(source(entries[line]))
        for child in egg.iterdir():
            # -T: a directory already there (a namespace package) is merged into.
            dest = site / (egg.name + "-info" if child.name == "EGG-INFO" else child.name)
            run(["cp", "-a", "-T", child, dest])
    kept = [l for l in lines if l not in eggs]
    at = kept.index("sys.path[0:0] = [\n") + 1
    kept.insert(at, "  %r,\n" % str(site))
    return "".join(kept)


def merged_layout(tree, work):
    """bin/importstack of `tree` with its eggs merged (`merge_eggs`)."""
    script = work / "merged" / "importstack"
    text = merge_eggs((tree / "bin" / "importstack").read_text(), work / "merged" / "site")
    script.write_text(text)
    return script


def main():
    bbrun = Path(sys.argv[1]).resolve()
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    tree, moved, python = build_tree(TARGET / "bench-imports", bbrun)
    merged = merged_layout(tree, TARGET / "bench-imports")
    env = dict(os.environ)
    env.pop("BBRUN_NO_INDEX", None)
    off = dict(env, BBRUN_NO_INDEX="1")
    baseline = os.environ.get("BASELINE")
    cases = {
        "Zope import stack": "bin/importstack",
        "sys.path only": "bin/nothing",
    }
    print("imports, Zope 5 buildout, %d interleaved runs each, median wall time" % runs)
    print("load average: %.2f %.2f %.2f" % os.getloadavg())
    print("%-20s %10s %12s %12s %9s %9s" % ("case", "in place", "moved+index", "moved-index", "ratio", "no-index")
          + ("  baseline+index" if baseline else ""))
    for name, script in cases.items():
        variants = {
            "in place": ([python, tree / script], env),
            "index": ([bbrun, moved / script], env),
            "no index": ([bbrun, moved / script], off),
        }
        if name.startswith("Zope"):
            variants["merged"] = ([python, merged], env)
        if baseline:
            variants["baseline"] = ([baseline, moved / script], env)
        for cmd, e in variants.values():  # warm caches and the probe cache
            timed(cmd, e)
        samples = {k: [] for k in variants}
        cpu = {k: [] for k in variants}
        for _ in range(runs):
            for k, (cmd, e) in variants.items():
                wall, used = timed(cmd, e)
                samples[k].append(wall)
                cpu[k].append(used)
        med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
        cmed = {k: statistics.median(v) * 1000 for k, v in cpu.items()}
        print(
            "%-20s %8.1fms %10.1fms %10.1fms %8.3fx %8.3fx"
            % (
                name,
                med["in place"],
                med["index"],
                med["no index"],
                med["index"] / med["in place"],
                med["no index"] / med["in place"],
            )
            + ("  %6.1fms %6.3fx" % (med["baseline"], med["baseline"] / med["in place"]) if baseline else "")
        )
        print(
            "  CPU time (user+sys) %8.1fms %10.1fms %10.1fms %8.3fx %8.3fx"
            % (
                cmed["in place"],
                cmed["index"],
                cmed["no index"],
                cmed["index"] / cmed["in place"],
                cmed["no index"] / cmed["in place"],
            )
            + ("  %6.1fms %6.3fx" % (cmed["baseline"], cmed["baseline"] / cmed["in place"]) if baseline else "")
        )
        if "merged" in med:
            print(
                "  every egg merged into one directory, in place: %.1fms %.3fx in place;"
                " moved+index %.3fx of it (CPU %.3fx)"
                % (
                    med["merged"],
                    med["merged"] / med["in place"],
                    med["index"] / med["merged"],
                    cmed["index"] / cmed["merged"],
                )
            )
        if name.startswith("Zope"):
            counts = {k: syscalls(cmd, e) for k, (cmd, e) in variants.items()}
            print("  file-system syscalls (strace -f -c):")
            for k, c in counts.items():
                print("  %-10s %6d  %s" % (k, sum(c.values()), " ".join("%s=%d" % kv for kv in sorted(c.items()))))
            print("  ratio moved+index / in place: %.3fx" % (sum(counts["index"].values()) / sum(counts["in place"].values())))


if __name__ == "__main__":
    main()
