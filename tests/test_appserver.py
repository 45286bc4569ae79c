"""The application-server fixture itself: a frozen Zope 5 buildout, copied
to a new root (the build root and its venv gone), serves over HTTP and
keeps its data."""

import time

from appserver import (
    add_folder,
    has_object,
    http_get,
    run_in_instance,
    start_instance,
    stop_instance,
    tree_stats,
)
from conftest import copy_tree, run


def test_zope_tree_is_a_real_application_server(frozen_zope):
    root = frozen_zope["pristine"]
    eggs = [p for p in (root / "eggs").rglob("*.egg") if p.is_dir()]
    assert len(eggs) >= 70, eggs
    assert any(p.name.startswith("Zope-5.") for p in eggs)
    assert len(list(root.rglob("*.so"))) >= 20
    assert (root / "parts" / "instance" / "etc" / "zope.conf").is_file()
    assert (root / "var" / "filestorage" / "Data.fs").is_file()
    # Stopped cleanly at the build root: index written, no stale pid file.
    assert (root / "var" / "filestorage" / "Data.fs.index").is_file()
    assert not (root / "var" / "instance" / "Z4.pid").exists()
    assert not frozen_zope["build_root"].exists()
    assert not frozen_zope["venv"].exists()


def test_copied_zope_serves_and_stores(frozen_zope, bbrun, tmp_path):
    started = time.monotonic()
    root = copy_tree(frozen_zope["pristine"], tmp_path / "z")
    run([bbrun, "relocate", root])
    data_fs = root / "var" / "filestorage" / "Data.fs"
    pristine_data = (frozen_zope["pristine"] / "var" / "filestorage" / "Data.fs").read_bytes()
    size_before = data_fs.stat().st_size
    port = frozen_zope["port"]
    server = start_instance([bbrun, root / "bin" / "instance", "fg"], root, port)
    try:
        status, body = http_get(port, "/", auth=None)
        assert status == 200, body[:2000]
        # The data written at the build root came along...
        assert has_object(port, frozen_zope["seed"])
        # ...and the copy writes its own.
        assert not has_object(port, "added-here")
        add_folder(port, "added-here")
        assert has_object(port, "added-here")
    finally:
        log = stop_instance(server)
    assert server.returncode == 0, log  # a clean shutdown on SIGINT
    # The copy wrote its own database, not the pristine tree's.
    assert data_fs.stat().st_size > size_before, log
    assert (frozen_zope["pristine"] / "var" / "filestorage" / "Data.fs").read_bytes() == pristine_data
    # The same data, read without the server (`bin/instance run`).
    out = run_in_instance(root, "print(sorted(app.objectIds()))", prefix=[bbrun]).stdout
    assert "'added-here'" in out and "'seed'" in out, out
    files, size = tree_stats(root)
    print(
        "zope fixture %s; smoke %.1fs; tree %d files, %.0f MB"
        % (frozen_zope["seconds"], time.monotonic() - started, files, size / 1e6)
    )
