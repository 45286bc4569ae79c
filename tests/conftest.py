"""Fixtures shared by bbrun's integration tests.

Everything here is real: real distributions from PyPI (fetched once into
target/test-cache/dists, offline after that), real virtualenvs, real
zc.buildout runs, the real bbrun binary (built by tests/run.sh).
"""

import json
import os
import shutil
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
    copy_tree,
    fetch_dists,
    make_venv,
    run,
    tree_digest,
)


@pytest.fixture(scope="session")
def bbrun():
    path = Path(os.environ.get("BBRUN", TARGET / "debug" / "bbrun"))
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


