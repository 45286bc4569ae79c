"""A moved or copied tree is the same program as in place, and runs on its
own files: `mv` and `cp -a` with no command run first, the original still
running beside the copy, generated scripts outside bin/, children that run
another tree's script, the tree's own venv, a fallback interpreter with
sys.path as in place, and paths that are not UTF-8."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import SAMPLE, base_python, copy_tree, make_venv, run

# A recipe-generated script outside bin/ (as zope2instance writes
# parts/instance/bin/interpreter): its body names build paths, and it reads
# a config file that names the tree's var/ (as zope.conf does).
WRITER = """#!{python}
import json, os, sys, time
sys.path[0:0] = ['{root}/src/demoapp']
conf = '{root}/etc/app.conf'
import demoapp
settings = dict(l.split(' = ', 1) for l in open(conf).read().splitlines() if ' = ' in l)
data = settings['datafile']
os.makedirs(os.path.dirname(data), exist_ok=True)
with open(data, 'a') as f:
    f.write('%d\\n' % os.getpid())
print(json.dumps({{'conf': conf, 'data': data, 'demoapp': demoapp.__file__,
                  'path': sys.path, 'executable': sys.executable, 'prefix': sys.prefix}}), flush=True)
if sys.argv[1:] == ['serve']:
    with open(os.path.join(os.path.dirname(data), 'app.lock'), 'w') as lock:
        lock.write(str(os.getpid()))
    while True:
        time.sleep(0.1)
        with open(data, 'a') as f:
            f.write('%d\\n' % os.getpid())
"""


def add_app_files(root, python):
    (root / "etc" / "app.conf").write_text("datafile = %s/var/data.txt\n" % root)
    writer = root / "parts" / "writer" / "bin" / "writer"
    writer.parent.mkdir(parents=True)
    writer.write_text(WRITER.format(python=python, root=root))
    writer.chmod(0o755)


def build_at(root, venv, dists):
    """The sample buildout at `root`, built by `venv`'s buildout (which may
    live inside `root`), plus the writer part."""
    cfg = (SAMPLE / "buildout.cfg.in").read_text().replace("@DISTS@", str(dists))
    (root / "buildout.cfg").write_text(cfg)
    run([venv / "bin" / "buildout", "-c", root / "buildout.cfg"], cwd=root)
    add_app_files(root, venv / "bin" / "python")
    return root


def copy_sample(root):
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "buildout.cfg.in"))


@pytest.fixture(scope="module")
def app(tmp_path_factory, dists, bbrun):
    """The sample buildout plus a writer part, built at A with a venv
    outside the tree (kept: the build host), frozen. `inplace_path` is
    bin/py's sys.path in place, before freeze."""
    base = tmp_path_factory.mktemp("parity")
    venv = base / "venv"
    make_venv(venv, dists)
    a = base / "build" / "app"
    copy_sample(a)
    build_at(a, venv, dists)
    inplace = json.loads(run([a / "bin" / "py", "-c", "import sys, json; print(json.dumps(sys.path))"]).stdout)
    run([bbrun, "freeze", a])
    return {"root": a, "venv": venv, "inplace_path": inplace}


def fresh(app, dest):
    """A copy of the frozen tree; its first launch relocates it."""
    return copy_tree(app["root"], dest)


def writer(bbrun, root, *args, **kw):
    return json.loads(run([bbrun, root / "parts" / "writer" / "bin" / "writer", *args], **kw).stdout)


def under(path, root):
    return str(path).startswith(str(root) + "/")


def pids(data):
    return set(Path(data).read_text().split()) if Path(data).exists() else set()


# --- 1. zero-step moves ---------------------------------------------------


def test_plain_mv_runs_on_its_own_files(app, bbrun, tmp_path):
    x = fresh(app, tmp_path / "x")
    y = tmp_path / "y"
    os.rename(x, y)
    out = writer(bbrun, y)
    assert out["data"] == str(y / "var" / "data.txt")
    assert (y / "var" / "data.txt").exists()
    assert (y / "etc" / "app.conf").read_text() == "datafile = %s/var/data.txt\n" % y
    assert str(app["root"]) not in (y / ".installed.cfg").read_text()
    assert not x.exists()


def test_copy_beside_a_running_original_writes_only_its_own_var(app, bbrun, tmp_path):
    p = fresh(app, tmp_path / "p")
    serving = subprocess.Popen(
        [str(bbrun), str(p / "parts" / "writer" / "bin" / "writer"), "serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        first = json.loads(serving.stdout.readline())
        assert first["data"] == str(p / "var" / "data.txt")
        # The writer prints before it takes its lock file: copy once the
        # original holds it, as a copy of a running tree would.
        deadline = time.monotonic() + 20
        while not (p / "var" / "app.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        q = copy_tree(p, tmp_path / "q")
        (q / "var" / "data.txt").unlink()
        (q / "var" / "app.lock").unlink()
        out = writer(bbrun, q)
        assert out["data"] == str(q / "var" / "data.txt")
        assert out["conf"] == str(q / "etc" / "app.conf")
        assert under(out["demoapp"], q)
        assert len(pids(q / "var" / "data.txt")) == 1
        assert str(serving.pid) not in pids(q / "var" / "data.txt")
        time.sleep(0.3)
        assert pids(p / "var" / "data.txt") == {str(serving.pid)}
        assert serving.poll() is None
        assert not (q / "var" / "app.lock").exists()
    finally:
        serving.kill()
        serving.wait()


def test_concurrent_first_launches_relocate_once(app, bbrun, tmp_path):
    y = fresh(app, tmp_path / "y")
    procs = [
        subprocess.Popen([str(bbrun), str(y / "parts" / "writer" / "bin" / "writer")], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(o["data"] == str(y / "var" / "data.txt") for o in outs)
    assert (y / "etc" / "app.conf").read_text() == "datafile = %s/var/data.txt\n" % y
    assert not (y / ".bbrun" / "relocate-journal.toml").exists()


def test_read_only_tree_at_a_new_root_refuses_with_what_to_run(app, bbrun):
    # Outside pytest's 0700 tmp dirs, so another user can reach it.
    top = Path(tempfile.mkdtemp(prefix="bbrun-ro-"))
    try:
        top.chmod(0o755)
        y = fresh(app, top / "y")
        before = (y / "etc" / "app.conf").read_text()
        proc = run(["runuser", "-u", "nobody", "--", bbrun, y / "parts" / "writer" / "bin" / "writer"], check=False)
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bbrun: error: "), proc.stderr
        assert "bbrun relocate %s" % y in lines[0]
        assert (y / "etc" / "app.conf").read_text() == before
        assert not (y / "var" / "data.txt").exists()
    finally:
        shutil.rmtree(top)


# --- 3. generated scripts outside bin/ -------------------------------------


def test_generated_script_outside_bin_is_a_script(app, bbrun, tmp_path):
    m = json.loads(run([bbrun, "freeze", "--dry-run", "--json", app["root"]]).stdout)
    assert "parts/writer/bin/writer" in m["scripts"]
    y = fresh(app, tmp_path / "y")
    body = (y / "parts" / "writer" / "bin" / "writer").read_bytes().split(b"\n", 1)[1]
    writer(bbrun, y)  # relocates
    run([bbrun, "relocate", y])
    assert (y / "parts" / "writer" / "bin" / "writer").read_bytes().split(b"\n", 1)[1] == body
    run([bbrun, "shebang", y])
    out = json.loads(run([y / "parts" / "writer" / "bin" / "writer"]).stdout)
    assert out["data"] == str(y / "var" / "data.txt")
    assert (y / "parts" / "writer" / "bin" / "writer").read_bytes().split(b"\n", 1)[1] == body


# --- 4. children ------------------------------------------------------------


def test_child_running_another_trees_script_gets_that_trees_mapping(app, bbrun, tmp_path):
    one = fresh(app, tmp_path / "one")
    two = fresh(app, tmp_path / "two")
    code = "import subprocess, sys; sys.exit(subprocess.run([sys.executable, sys.argv[-1]]).returncode)"
    for target in (two, one):
        out = json.loads(run([bbrun, one / "bin" / "py", "-c", code, target / "parts" / "writer" / "bin" / "writer"]).stdout)
        assert out["conf"] == str(target / "etc" / "app.conf")
        assert out["data"] == str(target / "var" / "data.txt")
        assert under(out["demoapp"], target)
        assert all(str(app["root"]) not in p for p in out["path"])
        other = one if target == two else two
        assert not any(under(p, other) for p in out["path"])


def test_handed_over_child_keeps_its_interpreter_options(app, bbrun, tmp_path):
    """`python -u -O -X dev -W error::ResourceWarning ROOT/bin/x` started from
    a launched process is handed to the launcher and still runs with those
    options (as it would in place), and they are not inherited further."""
    one = fresh(app, tmp_path / "one")
    writer = (one / "parts" / "writer" / "bin" / "writer").read_text()
    flags = one / "bin" / "flags"
    flags.write_text(
        writer.splitlines()[0] + "\n"
        "import json, os, sys\n"
        "print(json.dumps({'optimize': sys.flags.optimize, 'dev': sys.flags.dev_mode,"
        " 'unbuffered': type(sys.stdout.buffer).__name__ == 'FileIO', 'warn': sys.warnoptions,"
        " 'handed': os.environ.get('BBRUN_CHILD_OPTIONS'), 'root': os.environ.get('BBRUN_ROOT')}))\n"
    )
    flags.chmod(0o755)
    code = (
        "import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-u', '-O', '-X', 'dev',"
        " '-W', 'error::ResourceWarning', sys.argv[-1]]).returncode)"
    )
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    out = json.loads(run([bbrun, one / "bin" / "py", "-c", code, flags], env=env).stdout)
    assert out["root"] == str(one)
    assert out["optimize"] == 1 and out["dev"] is True and out["unbuffered"] is True, out
    assert "error::ResourceWarning" in out["warn"], out
    assert not out["handed"], out
    # Without options nothing is added.
    code = "import subprocess, sys; sys.exit(subprocess.run([sys.executable, sys.argv[-1]]).returncode)"
    out = json.loads(run([bbrun, one / "bin" / "py", "-c", code, flags], env=env).stdout)
    assert out["optimize"] == 0 and out["dev"] is False and out["unbuffered"] is False, out


# --- 2. isolation on a fallback interpreter ----------------------------------


def test_fallback_interpreter_sys_path_equals_in_place(app, bbrun, tmp_path):
    y = fresh(app, tmp_path / "y")
    env = dict(os.environ, BBRUN_PYTHON=base_python(), BBRUN_CACHE_DIR=str(tmp_path / "cache"))
    code = "import sys, json; print(json.dumps([sys.path, sys.flags.no_user_site, sys.prefix]))"
    moved, _, prefix = json.loads(run([bbrun, y / "bin" / "py", "-c", code], env=env).stdout)
    a = str(app["root"])
    venv_site = str(app["venv"] / "lib" / ("python%d.%d" % sys.version_info[:2]) / "site-packages")
    m = (y / ".bbrun" / "map.toml").read_text()
    collected = m.split('original = "%s"' % venv_site, 1)[1].split('in_tree = "', 1)[1].split('"', 1)[0]
    want = [p.replace(venv_site, str(y / collected)).replace(a, str(y)) for p in app["inplace_path"]]
    assert moved == want
    base_site = subprocess.run(
        [base_python(), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True, text=True
    ).stdout.strip()
    assert base_site not in moved
    assert not prefix.startswith(str(y))
    # A child started with sys.executable sees the same isolation.
    child = "import subprocess, sys; subprocess.run([sys.executable, '-c', %r])" % code
    child_path = json.loads(run([bbrun, y / "bin" / "py", "-c", child], env=env).stdout)[0]
    assert base_site not in child_path
    assert str(y / collected) in child_path


# --- 6. paths are bytes -------------------------------------------------------


PATHS_HEX = (
    "import sys, os, json, demoapp; print(json.dumps({'path': [os.fsencode(p).hex() for p in sys.path],"
    " 'demoapp': os.fsencode(demoapp.__file__).hex(), 'exe': os.fsencode(sys.executable).hex()}))"
)


def launch_bytes(bbrun, root, *args, env=None):
    """`bbrun ROOT/bin/py -c PATHS_HEX` with ROOT as bytes; what it printed."""
    proc = subprocess.run(
        [os.fsencode(str(bbrun)), os.path.join(root, b"bin/py"), *args, "-c", PATHS_HEX], capture_output=True, env=env
    )
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    out = json.loads(proc.stdout)
    return {k: [bytes.fromhex(p) for p in v] if isinstance(v, list) else bytes.fromhex(v) for k, v in out.items()}


def assert_runs_on_own_bytes(root, out, old_roots):
    assert out["demoapp"].startswith(root + b"/"), out["demoapp"]
    tree_entries = [p for p in out["path"] if p.startswith(root + b"/")]
    assert tree_entries, out["path"]
    for p in out["path"]:
        assert not any(p.startswith(o + b"/") or p == o for o in old_roots), p
    assert (Path(os.fsdecode(root)) / "etc" / "app.conf").read_bytes() == b"datafile = " + root + b"/var/data.txt\n"


def test_non_utf8_destination_runs_byte_exact(app, bbrun, tmp_path):
    """cp -a to a path that is not UTF-8, run with no command first, then mv
    to another such path: every path the program sees and every file
    relocate rewrote names the new root byte for byte."""
    a = os.fsencode(str(app["root"]))
    one = os.path.join(os.fsencode(str(tmp_path)), b"caf\xe9 \xff%41")
    shutil.copytree(os.fsdecode(a), os.fsdecode(one), symlinks=True)
    assert_runs_on_own_bytes(one, launch_bytes(bbrun, one), [a])
    map_text = (Path(os.fsdecode(one)) / ".bbrun" / "map.toml").read_text()
    assert "bytes:" in map_text and "\ufffd" not in map_text
    two = os.path.join(os.fsencode(str(tmp_path)), b"\xc0\xaf-two")
    os.rename(one, two)
    assert_runs_on_own_bytes(two, launch_bytes(bbrun, two), [a, one])
    # On a fallback interpreter (the build venv gone) through the view.
    env = dict(os.environ, BBRUN_PYTHON=base_python(), BBRUN_CACHE_DIR=str(tmp_path / "cache"))
    out = launch_bytes(bbrun, two, env=env)
    assert_runs_on_own_bytes(two, out, [a, one])
    assert not out["exe"].startswith(os.fsencode(str(app["venv"]))), out["exe"]
    # `bbrun relocate` on a tree already relocated there has nothing to do.
    proc = subprocess.run([os.fsencode(str(bbrun)), b"relocate", two], capture_output=True)
    assert proc.returncode == 0 and b"nothing to do" in proc.stdout, proc.stdout + proc.stderr


def test_non_utf8_install_destination(app, bbrun, tmp_path):
    """An archive installed at a path that is not UTF-8 runs there, and
    verify passes."""
    archive = tmp_path / "app.tar.gz"
    run([bbrun, "pack", app["root"], "--format", "tar.gz", "-o", archive])
    dest = os.path.join(os.fsencode(str(tmp_path)), b"opt-\xe9\n-x", b"app")
    proc = subprocess.run([os.fsencode(str(bbrun)), b"install", os.fsencode(str(archive)), dest], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    assert_runs_on_own_bytes(dest, launch_bytes(bbrun, dest), [os.fsencode(str(app["root"]))])
    proc = subprocess.run([os.fsencode(str(bbrun)), b"verify", dest], capture_output=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Re-install (an upgrade in place) keeps working at the same odd path.
    proc = subprocess.run([os.fsencode(str(bbrun)), b"install", os.fsencode(str(archive)), dest], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    assert_runs_on_own_bytes(dest, launch_bytes(bbrun, dest), [os.fsencode(str(app["root"]))])


def test_freeze_at_non_utf8_path_is_one_clear_line(app, bbrun, tmp_path):
    """Freeze searches files for the build root as text: at a root that is
    not UTF-8 it refuses in one line instead of recording a lossy root."""
    root = os.path.join(os.fsencode(str(tmp_path)), b"b\xe9")
    shutil.copytree(os.fsdecode(os.fsencode(str(app["root"]))), os.fsdecode(root), symlinks=True)
    before = (Path(os.fsdecode(root)) / ".bbrun" / "map.toml").read_bytes()
    proc = subprocess.run([os.fsencode(str(bbrun)), b"freeze", root], capture_output=True)
    assert proc.returncode != 0
    err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    assert len(err) == 1 and "not UTF-8" in err[0], err
    assert (Path(os.fsdecode(root)) / ".bbrun" / "map.toml").read_bytes() == before


# --- a venv inside the tree (the Plone 6 layout) -----------------------------


@pytest.fixture(scope="module")
def venv_tree(tmp_path_factory, dists, bbrun):
    base = tmp_path_factory.mktemp("venvtree")
    a = base / "site"
    copy_sample(a)
    make_venv(a / "venv", dists)
    build_at(a, a / "venv", dists)
    run([bbrun, "freeze", a])
    return a


def test_copy_runs_on_its_own_venv_not_the_originals(venv_tree, bbrun, tmp_path):
    y = copy_tree(venv_tree, tmp_path / "y")
    out = writer(bbrun, y)
    assert out["executable"] == str(y / "venv" / "bin" / "python")
    assert out["prefix"] == str(y / "venv")
    assert out["data"] == str(y / "var" / "data.txt")
    code = "import sys, json; print(json.dumps([sys.executable, [m.__file__ for n, m in sys.modules.items() if getattr(m, '__file__', None)]]))"
    exe, files = json.loads(run([bbrun, y / "bin" / "py", "-c", code]).stdout)
    assert exe == str(y / "venv" / "bin" / "python")
    assert not [f for f in files if f.startswith(str(venv_tree) + "/")]


def test_venv_interpreter_runs_with_the_trees_mapping(venv_tree, bbrun, tmp_path):
    y = copy_tree(venv_tree, tmp_path / "y")
    code = "import sys, bbrun_shim; print(sys.prefix); print(bbrun_shim.map_path(%r))" % (str(venv_tree) + "/etc")
    for name in ("python", "python%d.%d" % sys.version_info[:2]):
        lines = run([bbrun, y / "venv" / "bin" / name, "-c", code]).stdout.splitlines()
        assert lines == [str(y / "venv"), str(y / "etc")]


def test_venv_in_the_tree_installs_with_no_flag(venv_tree, bbrun, tmp_path):
    arch = tmp_path / "site.tar.zst"
    run([bbrun, "pack", venv_tree, "--format", "tar.zst", "-o", arch])
    dest = tmp_path / "deployed"
    run([bbrun, "install", arch, dest])
    exe = dest / "venv" / "bin" / ("python%d.%d" % sys.version_info[:2])
    assert os.path.exists(os.path.realpath(exe))
    assert run([bbrun, "verify", dest]).returncode == 0
    out = writer(bbrun, dest)
    assert out["executable"] == str(dest / "venv" / "bin" / "python")
    assert out["prefix"] == str(dest / "venv")
    assert out["data"] == str(dest / "var" / "data.txt")


# --- 7. the Zope 5 application server ---------------------------------------


def server_files(proc, tree_parent):
    """Paths of files open in the server's process group that lie under
    `tree_parent` (read from /proc while it runs)."""
    out = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.getpgid(int(pid)) != proc.pid:
                continue
            for fd in os.listdir("/proc/%s/fd" % pid):
                target = os.readlink("/proc/%s/fd/%s" % (pid, fd))
                if target.startswith(str(tree_parent) + "/"):
                    out.add(target)
        except OSError:
            continue
    return out


def set_listen_port(root, port):
    """Give a copy its own port (as its owner would, in the generated
    wsgi.ini), so it can serve beside the original."""
    ini = root / "parts" / "instance" / "etc" / "wsgi.ini"
    text = ini.read_text()
    old = [w for w in text.split() if w.startswith("127.0.0.1:")]
    assert old, text
    ini.write_text(text.replace(old[0], "127.0.0.1:%d" % port))


def test_zope_after_plain_mv_serves_on_its_own_var(frozen_zope, bbrun, tmp_path):
    from appserver import add_folder, has_object, start_instance, stop_instance

    x = copy_tree(frozen_zope["pristine"], tmp_path / "x")
    y = tmp_path / "moved" / "y"
    y.parent.mkdir()
    os.rename(x, y)
    data_fs = y / "var" / "filestorage" / "Data.fs"
    size = data_fs.stat().st_size
    pristine_fs = frozen_zope["pristine"] / "var" / "filestorage" / "Data.fs"
    pristine = (pristine_fs.stat().st_size, pristine_fs.stat().st_mtime_ns)
    port = frozen_zope["port"]
    server = start_instance([bbrun, y / "bin" / "instance", "fg"], y, port)
    try:
        assert has_object(port, frozen_zope["seed"])
        add_folder(port, "after-mv")
        opened = server_files(server, tmp_path)
        assert opened and all(under(p, y) for p in opened), opened
    finally:
        log = stop_instance(server)
    assert data_fs.stat().st_size > size, log
    assert (pristine_fs.stat().st_size, pristine_fs.stat().st_mtime_ns) == pristine
    assert str(y) in (y / "parts" / "instance" / "etc" / "zope.conf").read_text()


def test_zope_copy_beside_the_running_original_uses_only_its_own_var(frozen_zope, bbrun, tmp_path):
    from appserver import add_folder, free_port, has_object, start_instance, stop_instance

    p = copy_tree(frozen_zope["pristine"], tmp_path / "p")
    p_port = frozen_zope["port"]
    original = start_instance([bbrun, p / "bin" / "instance", "fg"], p, p_port)
    copy = None
    try:
        add_folder(p_port, "in-p-before-copy")
        q = copy_tree(p, tmp_path / "q")
        q_port = free_port()
        set_listen_port(q, q_port)
        q_fs = q / "var" / "filestorage" / "Data.fs"
        p_fs = p / "var" / "filestorage" / "Data.fs"
        q_size = q_fs.stat().st_size
        copy = start_instance([bbrun, q / "bin" / "instance", "fg"], q, q_port)
        add_folder(q_port, "in-q")
        add_folder(p_port, "in-p")
        assert has_object(q_port, "in-q") and not has_object(q_port, "in-p")
        assert has_object(p_port, "in-p") and not has_object(p_port, "in-q")
        q_open = server_files(copy, tmp_path)
        p_open = server_files(original, tmp_path)
        assert q_open and all(under(f, q) for f in q_open), q_open
        assert p_open and all(under(f, p) for f in p_open), p_open
        assert str(q / "var" / "filestorage" / "Data.fs") in q_open
        p_size = p_fs.stat().st_size
    finally:
        if copy is not None:
            stop_instance(copy)
        stop_instance(original)
    assert q_fs.stat().st_size > q_size
    assert p_fs.stat().st_size >= p_size
    # Each instance's config names only its own var/.
    for root in (p, q):
        conf = (root / "parts" / "instance" / "etc" / "zope.conf").read_text()
        assert str(root) + "/var" in conf and str(p if root == q else q) + "/" not in conf


def test_zope_at_a_path_that_is_not_utf8_runs_on_its_own_var(frozen_zope, bbrun, tmp_path):
    """Point 6 on the application server: a plain mv to a directory whose
    name is not UTF-8. The first launch rewrites zope.conf and wsgi.ini with
    the exact bytes; the instance's interpreter imports the whole stack from
    the tree and opens the tree's own Data.fs there. (`instance fg` itself
    stops in ZConfig, which loads its schema through a file:// URL that
    cannot carry such a path: ZConfig's limit, in place as much as moved.)"""
    x = copy_tree(frozen_zope["pristine"], tmp_path / "x")
    y = os.path.join(os.fsencode(str(tmp_path)), b"zope-\xe9\xff")
    os.rename(x, os.fsdecode(y))
    code = (
        "import os, sys, json, Zope2, OFS.Application, ZODB.FileStorage, ZODB.DB; "
        "fs = os.path.join(os.fsdecode(os.environb[b'TREE']), 'var', 'filestorage', 'Data.fs'); "
        "db = ZODB.DB(ZODB.FileStorage.FileStorage(fs)); c = db.open(); "
        "app = c.root()['Application']; "
        "print(json.dumps({'seed': %r in app.objectIds(), 'zope': os.fsencode(Zope2.__file__).hex(), "
        "'storage': os.fsencode(db.storage.getName()).hex()})); db.close()" % frozen_zope["seed"]
    )
    interp = os.path.join(y, b"parts/instance/bin/interpreter")
    env = dict(os.environb)
    env[b"TREE"] = y
    proc = subprocess.run([os.fsencode(str(bbrun)), interp, "-c", code], capture_output=True, env=env)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    out = json.loads(proc.stdout)
    assert out["seed"] is True
    assert bytes.fromhex(out["zope"]).startswith(y + b"/eggs/")
    assert bytes.fromhex(out["storage"]) == y + b"/var/filestorage/Data.fs"
    for rel in (b"parts/instance/etc/zope.conf", b"parts/instance/etc/wsgi.ini"):
        text = open(os.path.join(y, rel), "rb").read()
        assert y + b"/var" in text, rel
        assert os.fsencode(str(frozen_zope["build_root"])) not in text, rel
