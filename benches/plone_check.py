"""Operator check on the frozen Plone 6 tree (benches/plone_tree.py), run
by hand: too heavy for CI. Reports, without asserting, what issues 8 and
11 need to know:

1. in place (the tree copied back to its build root A): `bin/instance fg`
   serves, `bin/instance run` and `bin/zopepy` import Products.CMFPlone;
2. `cp -a` to B with A still there, then with A gone: what
   `bbrun B/bin/instance fg` runs on (interpreter, argv) and whose files it
   opens;
3. `import Products.CMFPlone` with the tree's interpreter: wall time
   (interleaved medians) and file-system syscalls (`strace -f -c`).

    bash benches/plone_check.sh [RUNS]      # release bbrun; RUNS default 5
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from appserver import http_get, run_in_instance, start_instance, stop_instance  # noqa: E402
from plone_tree import WORK, frozen_plone_tree  # noqa: E402
from support import cargo_out, run  # noqa: E402

SYSCALLS = ("newfstatat", "openat", "getdents64")
IMPORT = "import Products.CMFPlone"
REPORT = (
    "import sys, Products.CMFPlone; "
    "print('executable', sys.executable); print('modules', len(sys.modules)); "
    "print('sys.path', len(sys.path)); print('CMFPlone', Products.CMFPlone.__file__)"
)


def copy(src, dest):
    run(["rm", "-rf", dest])
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-a", src, dest])


def processes(group):
    """(pid, exe, argv) of every process in a process group."""
    out = []
    for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            if os.getpgid(pid) != group:
                continue
            exe = os.readlink("/proc/%d/exe" % pid)
            argv = Path("/proc/%d/cmdline" % pid).read_bytes().split(b"\0")[:-1]
        except OSError:
            continue
        out.append((pid, exe, [a.decode(errors="replace") for a in argv]))
    return out


def open_files(pid, under):
    files = set()
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return []
    for fd in fds:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith(str(under) + "/"):
            files.add(target)
    return sorted(files)


def serve(label, cmd, root, port, other):
    """Start the instance, GET /, list what each process runs and which of
    `root`'s and `other`'s files it holds open, stop it."""
    print("\n## %s\n$ %s" % (label, " ".join(map(str, cmd))))
    t = time.monotonic()
    try:
        server = start_instance(cmd, root, port, timeout=300)
    except AssertionError as e:
        print("did not serve:")
        print("\n".join("  | " + line for line in str(e).splitlines()[-4:]))
        return
    try:
        status, _body = http_get(port, "/", auth=None)
        print("GET / -> HTTP %d after %.1fs" % (status, time.monotonic() - t))
        for pid, exe, argv in processes(server.pid):
            print("  pid %d exe %s" % (pid, exe))
            print("    argv[:3] %s" % argv[:3])
            mine, theirs = open_files(pid, root), open_files(pid, other)
            print("    open under this tree: %d; under %s: %s" % (len(mine), other, theirs or "none"))
    finally:
        output = stop_instance(server)
    print("stopped, exit %s%s" % (server.returncode, "" if server.returncode == 0 else "\n" + output[-2000:]))


def report(label, cmd):
    proc = run(cmd, check=False)
    print("\n## %s\n$ %s\nexit %d" % (label, " ".join(map(str, cmd)), proc.returncode))
    for line in (proc.stdout + proc.stderr).strip().splitlines()[-8:]:
        print("  | " + line)


def timed(cmd):
    t = time.perf_counter()
    subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def syscalls(cmd):
    """File-system syscall counts of `cmd` and its children (strace -c)."""
    with tempfile.NamedTemporaryFile(suffix=".strace") as out:
        trace = ["strace", "-f", "-c", "-e", "trace=" + ",".join(SYSCALLS), "-o", out.name]
        run(trace + [str(c) for c in cmd])
        counts = dict.fromkeys(SYSCALLS, 0)
        for line in Path(out.name).read_text().splitlines():
            parts = line.split()
            if parts and parts[-1] in counts:
                counts[parts[-1]] = int(parts[3])
    return counts


def main():
    bbrun = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else cargo_out("release") / "bbrun"
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    tree = frozen_plone_tree(bbrun)
    try:
        check(tree, bbrun, runs)
    finally:
        # Leave the build root gone, as the tree's users expect it.
        run(["rm", "-rf", WORK / "copies", WORK / tree["build_root"].relative_to(WORK).parts[0]])


def check(tree, bbrun, runs):
    a, port = tree["build_root"], tree["port"]
    b = WORK / "copies" / "b"
    away = WORK / "copies" / "a-away"
    copy(tree["pristine"], a)
    copy(tree["pristine"], b)
    print("# Plone tree: %d eggs, %d sys.path entries, A=%s, B=%s" % (tree["eggs"], tree["sys_path"], a, b))

    serve("in place, direct", [a / "bin" / "instance", "fg"], a, port, b)
    serve("in place, through bbrun", [bbrun, a / "bin" / "instance", "fg"], a, port, b)
    proc = run_in_instance(a, REPORT + "; print('ZODB root', sorted(app.objectIds()))")
    print("\n## in place: bin/instance run\n" + "\n".join("  | " + x for x in proc.stdout.splitlines()[-6:]))
    report("in place: bin/zopepy", [a / "bin" / "zopepy", "-c", REPORT])

    serve("cp -a to B, A still there", [bbrun, b / "bin" / "instance", "fg"], b, port, a)
    report("cp -a to B, A still there: bin/zopepy", [bbrun, b / "bin" / "zopepy", "-c", REPORT])

    # The same copy with A gone (renamed away: nothing can reach it).
    copy(tree["pristine"], b)
    os.rename(a, away)
    try:
        serve("cp -a to B, A gone", [bbrun, b / "bin" / "instance", "fg"], b, port, a)
        report("cp -a to B, A gone: bin/zopepy", [bbrun, b / "bin" / "zopepy", "-c", REPORT])

        # Import cost with the tree's own interpreter script (bin/zopepy:
        # the instance's 228-entry sys.path, no Zope start-up). A is renamed
        # back and forth so that B always runs with A gone while the runs
        # stay interleaved.
        variants = {
            "A in place, direct": (True, [a / "bin" / "zopepy", "-c", IMPORT]),
            "A in place, bbrun": (True, [bbrun, a / "bin" / "zopepy", "-c", IMPORT]),
            "B (A gone), bbrun": (False, [bbrun, b / "bin" / "zopepy", "-c", IMPORT]),
        }

        def place(a_there):
            if a_there and away.exists():
                os.rename(away, a)
            elif not a_there and a.exists():
                os.rename(a, away)

        counts, samples = {}, {}
        for k, (a_there, cmd) in variants.items():
            place(a_there)
            counts[k] = syscalls(cmd)  # also warms the caches
            samples[k] = []
        for _ in range(runs):
            for k, (a_there, cmd) in variants.items():
                place(a_there)
                samples[k].append(timed(cmd))
    finally:
        if away.exists():
            os.rename(away, a)
    base = statistics.median(samples["A in place, direct"])
    print("\n## `%s` with bin/zopepy, median of %d" % (IMPORT, runs))
    print("%-22s %9s %7s %11s %8s %11s" % ("variant", "wall", "ratio", *SYSCALLS))
    for k, s in samples.items():
        med = statistics.median(s)
        c = counts[k]
        print("%-22s %7.0fms %6.2fx %11d %8d %11d" % (k, med * 1000, med / base, *(c[n] for n in SYSCALLS)))


if __name__ == "__main__":
    main()
