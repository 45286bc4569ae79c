"""The bbrun demo: build the sample buildout at a long path with a
virtualenv's Python, freeze it, move it (the build dir and the venv are
removed), and run its scripts from the new place, via bbrun and directly.

Run through examples/demo.sh, which builds bbrun first."""

import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import TARGET, build_buildout, fetch_dists, make_venv, run  # noqa: E402


def step(msg):
    print("\n==> " + msg, flush=True)


def show(cmd, **kw):
    print("$ " + " ".join(str(c) for c in cmd), flush=True)
    out = run(cmd, **kw).stdout
    print(out.rstrip())
    return out


def main():
    bbrun = Path(sys.argv[1]).resolve()
    work = TARGET / "demo"
    shutil.rmtree(work, ignore_errors=True)
    build_dir = work / "build-host" / "srv" / "a-long-build-path" / "sample-buildout"
    venv = work / "build-host" / "venv"
    deploy = work / "prod-host" / "opt" / "app"
    build_dir.parent.mkdir(parents=True)
    deploy.parent.mkdir(parents=True)

    step("fetching distributions into %s (offline after the first run)" % (TARGET / "test-cache" / "dists"))
    dists = fetch_dists()
    step("building the sample buildout at %s with %s" % (build_dir, venv / "bin" / "python"))
    make_venv(venv, dists)
    build_buildout(build_dir, venv, dists)
    print((build_dir / "bin" / "demo").read_text().split("\n")[0] + "   <- first line of bin/demo")

    step("freezing")
    show([bbrun, "freeze", build_dir])

    step("moving the tree to %s; the build dir and the venv are gone" % deploy)
    os.rename(build_dir, deploy)
    shutil.rmtree(work / "build-host")

    step("running through the launcher")
    out = show([bbrun, deploy / "bin" / "demo", "hello"])
    report = json.loads(out)
    assert report["btrees"].startswith(str(deploy)), report

    step("pointing line 1 of each script at the launcher, then running them directly")
    show([bbrun, "shebang", deploy])
    show([deploy / "bin" / "demo", "direct"])
    show([deploy / "bin" / "py", "-c", "import BTrees, sys; print('BTrees from', BTrees.__file__)"])
    step("done: the tree at %s runs without its build dir or build venv" % deploy)


if __name__ == "__main__":
    main()
