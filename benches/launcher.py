"""Launcher overhead benchmark: `bbrun bin/script` against `python
bin/script` run in place, in the same run, interleaved so machine noise hits
both alike. Reports medians and ratios (never asserts on time).

A second table measures a moved tree whose build venv is gone, run on the
base interpreter (the launcher's fallback, through its interpreter view),
against the same script in place (issue 8: at most 1.0x). The fallback is
forced with BBRUN_PYTHON=<base interpreter>, the code path a missing venv
takes. With BBRUN_BEFORE=<an older bbrun> it runs too, for before/after.

With a C compiler, two yardsticks run in the same rounds (see
`floor_programs`): the interpreter behind one more exec of a static
program, and the interpreter's shared libpython run inside a launcher.

Usage: bash benches/launcher.sh [RUNS]"""

import os

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


def timed_env(cmd, env):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def moved_on_base(bbrun, python, a, moved, runs):
    base = subprocess.run(
        [python, "-c", "import sys; print(sys._base_executable)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    fallback = dict(os.environ, BBRUN_PYTHON=base)
    plain = dict(os.environ)
    variants = {
        "python in place": ([python, a / "bin" / "py", "-c", "pass"], plain),
        "bbrun in place": ([bbrun, a / "bin" / "py", "-c", "pass"], plain),
        "bbrun moved, base": ([bbrun, moved / "bin" / "py", "-c", "pass"], fallback),
    }
    # The same tree with `site_dirs` taken out of its map: the launcher then
    # runs the base interpreter as it is, as bbrun did before the view.
    unwrapped = moved.parent / "moved-no-view"
    shutil.rmtree(unwrapped, ignore_errors=True)
    run(["cp", "-a", moved, unwrapped])
    m = unwrapped / ".bbrun" / "map.toml"
    m.write_text("".join(l for l in m.read_text().splitlines(True) if not l.startswith("site_dirs")))
    variants["moved, base, no view"] = ([bbrun, unwrapped / "bin" / "py", "-c", "pass"], fallback)
    before = os.environ.get("BBRUN_BEFORE")
    if before:
        variants["before: moved, base"] = ([before, moved / "bin" / "py", "-c", "pass"], fallback)
    for cmd, env in variants.values():
        timed_env(cmd, env)
    samples = {k: [] for k in variants}
    for _ in range(runs):
        for k, (cmd, env) in variants.items():
            samples[k].append(timed_env(cmd, env))
    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    print()
    print("bin/py -c pass, moved with the build venv gone (base interpreter %s), %d runs" % (base, runs))
    for k, v in med.items():
        print(
            "  %-22s %8.1fms  %6.3fx python in place  %6.3fx bbrun in place"
            % (k, v, v / med["python in place"], v / med["bbrun in place"])
        )


def floor_programs(python, work):
    """The two yardsticks of benches/support, built with cc when there is
    one: {name: argv prefix to put before `python SCRIPT ARGS`}.
    - "static exec": one more exec of a static program, nothing else: no
      launcher that execs the interpreter can cost less;
    - "libpython in process": the interpreter's shared libpython loaded into
      a launcher that runs CPython's main itself, no second exec (only for
      an interpreter linked against a shared libpython). It must give the
      script the same interpreter: sys.executable, prefixes and path are
      compared with a direct run before it is timed."""
    if not shutil.which("cc"):
        return {}
    support = Path(__file__).resolve().parent / "support"
    out = {}
    execer = work / "launch_floor_exec"
    run(["cc", "-O2", "-static", "-o", execer, support / "launch_floor_exec.c"])
    out["static exec"] = [execer]
    libpython = subprocess.run(
        [python, "-c", "import sysconfig as s, os; v = s.get_config_var;"
         " print(os.path.join(v('LIBDIR'), v('INSTSONAME')) if v('Py_ENABLE_SHARED') else '')"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    if libpython and os.path.exists(libpython):
        embed = work / "launch_floor_embed"
        run(["cc", "-O2", "-o", embed, support / "launch_floor_embed.c", "-ldl"])
        probe = ["-c", "import sys; print(sys.executable, sys.prefix, sys.base_prefix, sys.flags, sys.path)"]
        direct = run([python] + probe).stdout
        loaded = run([embed, libpython, python] + probe).stdout
        if direct != loaded:
            raise SystemExit("libpython in process is not the same interpreter:\n%s\n%s" % (direct, loaded))
        out["libpython in process"] = [embed, libpython]
    return out


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
    floors = floor_programs(python, work)

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
        # The floor of any launcher that execs the interpreter: the same
        # run in place, through one more exec of a minimal program.
        variants["via env"] = ["/usr/bin/env", python, a / argv[0]] + argv[1:]
        for k, prefix in floors.items():
            variants[k] = prefix + [python, a / argv[0]] + argv[1:]
        if os.environ.get("BBRUN_BEFORE"):
            variants["before"] = [os.environ["BBRUN_BEFORE"], a / argv[0]] + argv[1:]
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
        print(
            "%-44s %8.1fms %7.3fx"
            % ("  in place through /usr/bin/env (exec floor)", med["via env"], med["via env"] / med["in place"])
        )
        for k in floors:
            print("%-44s %8.1fms %7.3fx" % ("  in place, " + k, med[k], med[k] / med["in place"]))
        if "before" in med:
            print("%-44s %8.1fms %7.3fx" % ("  before (BBRUN_BEFORE, in place)", med["before"], med["before"] / med["in place"]))
    moved_on_base(bbrun, python, a, moved, runs)
    t = [timed([bbrun, "--version"]) for _ in range(runs)]
    print("bbrun --version alone (process start, no Python): %.2fms" % (statistics.median(t) * 1000))


if __name__ == "__main__":
    main()
