"""Fixtures shared by bbrun's integration tests.

Everything here is real: real distributions from PyPI (fetched once into
target/test-cache/dists, offline after that), real virtualenvs, real
zc.buildout runs, the real bbrun binary (built by tests/run.sh).
"""

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from support import (  # noqa: F401  (re-exported for the test modules)
    CACHE,
    REPO,
    REQUIREMENTS,
    SAMPLE,
    TARGET,
    base_python,
    build_buildout,
    cargo_out,
    copy_tree,
    fetch_dists,
    make_venv,
    run,
    tree_digest,
)
from appserver import (  # noqa: F401
    add_folder,
    build_zope_buildout,
    fetch_zope_dists,
    free_port,
    start_instance,
    stop_instance,
)


@pytest.fixture(scope="session")
def bbrun():
    path = Path(os.environ.get("BBRUN", cargo_out("debug") / "bbrun"))
    assert path.exists(), "%s missing: run tests through tests/run.sh" % path
    return path


@pytest.fixture(scope="session")
def dists():
    return fetch_dists()


@pytest.fixture(scope="session")
def frozen_sample(tmp_path_factory, dists, bbrun):
    """The sample buildout built at a long path A with a venv's python,
    frozen, then moved away with A and the venv gone. Tests copy it
    (`copy_tree`) to their own place; the copy keeps nothing of A.

    Returns a dict: pristine (the moved frozen tree), build_root (A, now
    gone), venv (gone), freeze_report (parsed --json)."""
    base = tmp_path_factory.mktemp("sample")
    venv = base / "venv"
    make_venv(venv, dists)
    a = base / "a-rather-long-build-directory-name" / "that-keeps-going" / "deeper-still" / "buildout"
    a.parent.mkdir(parents=True)
    build_buildout(a, venv, dists)
    report = json.loads(run([bbrun, "freeze", "--json", a]).stdout)
    pristine = base / "p"
    shutil.move(str(a), str(pristine))
    shutil.rmtree(base / "a-rather-long-build-directory-name")
    shutil.move(str(venv), str(base / "venv-gone"))
    shutil.rmtree(base / "venv-gone")
    return {"pristine": pristine, "build_root": a, "venv": venv, "freeze_report": report}


@pytest.fixture(scope="session")
def frozen_zope(tmp_path_factory, bbrun):
    """A Zope 5 application server (plone.recipe.zope2instance, ~80 eggs
    with compiled extensions) built at a long path A with a venv's python,
    started there once (so var/ holds a Data.fs with a folder `seed`, logs
    and the instance's other state, as on a deployed host), frozen, then
    moved away with A and the venv gone. Tests copy it (`copy_tree`).

    Returns a dict: pristine, build_root (A, gone), venv (gone),
    freeze_report (parsed --json), port (the instance's http-address in
    buildout.cfg and the generated config), seed (the folder created at A),
    seconds (wall time of each phase: fetch, venv, build, seed, freeze)."""
    clock = Clock()
    zdists = fetch_zope_dists()
    clock.lap("fetch")
    base = tmp_path_factory.mktemp("zope")
    venv = base / "venv"
    make_venv(venv, zdists)
    clock.lap("venv")
    a = base / "a-rather-long-build-directory-name" / "that-keeps-going" / "deeper-still" / "zope-buildout"
    a.parent.mkdir(parents=True)
    port = free_port()
    build_zope_buildout(a, venv, zdists, port)
    clock.lap("build")
    server = start_instance([a / "bin" / "instance", "fg"], a, port)
    try:
        add_folder(port, "seed")
    finally:
        stop_instance(server)
    clock.lap("seed")
    report = json.loads(run([bbrun, "freeze", "--json", a]).stdout)
    clock.lap("freeze")
    pristine = base / "p"
    shutil.move(str(a), str(pristine))
    shutil.rmtree(base / "a-rather-long-build-directory-name")
    shutil.move(str(venv), str(base / "venv-gone"))
    shutil.rmtree(base / "venv-gone")
    return {
        "pristine": pristine,
        "build_root": a,
        "venv": venv,
        "freeze_report": report,
        "port": port,
        "seed": "seed",
        "seconds": clock.laps,
    }


class Clock:
    """Wall-clock seconds per phase of a fixture, for reports (never
    asserted: timing belongs in benches/)."""

    def __init__(self):
        self.laps = {}
        self._t = time.monotonic()

    def lap(self, name):
        now = time.monotonic()
        self.laps[name] = round(now - self._t, 1)
        self._t = now
