"""The acid test of relocation: build at A, freeze, move to B (A gone), run."""

import json

from conftest import copy_tree, run


def test_moved_script_runs_from_new_root(frozen_sample, bbrun, tmp_path):
    b = copy_tree(frozen_sample["pristine"], tmp_path / "b")
    out = json.loads(run([bbrun, b / "bin" / "demo", "x"]).stdout)
    assert out["btrees"].startswith(str(b) + "/")
    assert out["demoapp"].startswith(str(b) + "/")
    assert out["keys"] == ["a", "b"]
    assert out["argv"] == [str(b / "bin" / "demo"), "x"]
