"""Launcher overhead benchmark: `bbrun bin/script` against `python
bin/script` run in place, in the same run, interleaved so machine noise hits
both alike. Reports medians and ratios (never asserts on time).

Usage: bash benches/launcher.sh [RUNS]"""

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import TARGET, build_buildout, fetch_dists, make_venv, run  # noqa: E402


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    bbrun = Path(sys.argv[1]).resolve()
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    work = TARGET / "bench-launcher"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    dists = fetch_dists()
    venv = work / "venv"
    python = make_venv(venv, dists)
    a = work / "build" / "sample"
    a.parent.mkdir()
    build_buildout(a, venv, dists)
    run([bbrun, "freeze", a])
    moved = work / "moved"
    run(["cp", "-a", a, moved])

    cases = {
        "bin/py -c pass": (["bin/py", "-c", "pass"]),
        "bin/demo (imports BTrees, zope.interface)": (["bin/demo"]),
    }
    print("launcher overhead, %d interleaved runs each, median wall time" % runs)
    print("%-44s %10s %10s %10s %8s" % ("script", "in place", "bbrun", "bbrun@B", "ratio"))
    for name, argv in cases.items():
        variants = {
            "in place": [python, a / argv[0]] + argv[1:],
            "bbrun": [bbrun, a / argv[0]] + argv[1:],
            "bbrun@B": [bbrun, moved / argv[0]] + argv[1:],
        }
        for cmd in variants.values():  # warm caches and the probe cache
            timed(cmd)
        samples = {k: [] for k in variants}
        for _ in range(runs):
            for k, cmd in variants.items():
                samples[k].append(timed(cmd))
        med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
        print(
            "%-44s %8.1fms %8.1fms %8.1fms %7.3fx"
            % (name, med["in place"], med["bbrun"], med["bbrun@B"], med["bbrun"] / med["in place"])
        )
    t = [timed([bbrun, "--version"]) for _ in range(runs)]
    print("bbrun --version alone (process start, no Python): %.2fms" % (statistics.median(t) * 1000))


if __name__ == "__main__":
    main()
