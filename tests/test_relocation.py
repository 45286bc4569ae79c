"""The acid test of relocation: build at A, freeze, move to B (A gone, the
build venv gone), run every script there, via bbrun and directly."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import base_python, copy_tree, run


def demo(bbrun, root, *args, direct=False, **kw):
    cmd = [root / "bin" / "demo", *args] if direct else [bbrun, root / "bin" / "demo", *args]
    return json.loads(run(cmd, **kw).stdout)


def assert_under(path, root):
    assert str(path).startswith(str(root) + "/"), "%s is not under %s" % (path, root)


@pytest.fixture
def moved(frozen_sample, tmp_path):
    """A fresh copy of the frozen sample at a short path B."""
    return copy_tree(frozen_sample["pristine"], tmp_path / "b")


def test_build_and_interpreter_are_gone(frozen_sample):
    assert not frozen_sample["build_root"].exists()
    assert not frozen_sample["venv"].exists()


def test_console_script_runs_from_new_root(moved, bbrun):
    out = demo(bbrun, moved, "x")
    assert_under(out["btrees"], moved)
    assert_under(out["demoapp"], moved)  # the develop egg
    assert_under(out["zope_interface_c"], moved)  # a compiled extension
    assert out["keys"] == ["a", "b"]
    assert out["argv"] == [str(moved / "bin" / "demo"), "x"]


def test_path_literal_in_script_body_is_mapped(moved, frozen_sample, bbrun):
    # bin/demo holds `config = '<A>/etc/demo.conf'` (zc.recipe.egg
    # initialization); the file is read from B.
    assert ("'%s/etc/demo.conf'" % frozen_sample["build_root"]).encode() in (moved / "bin" / "demo").read_bytes()
    out = demo(bbrun, moved)
    assert out["config"] == str(moved / "etc" / "demo.conf")
    assert out["settings"] == {"greeting": "hello from demo.conf"}


def test_scripts_stay_byte_for_byte(moved, frozen_sample, bbrun):
    before = {p.name: p.read_bytes() for p in (moved / "bin").iterdir()}
    demo(bbrun, moved)
    assert {p.name: p.read_bytes() for p in (moved / "bin").iterdir()} == before
    # And they still name the old build root: the shim maps, nothing rewrote.
    assert str(frozen_sample["build_root"]).encode() in before["demo"]


def test_relative_script_path_and_argv0(moved, bbrun):
    out = json.loads(run([bbrun, "bin/demo", "--flag"], cwd=moved).stdout)
    assert out["argv"] == ["bin/demo", "--flag"]
    assert_under(out["btrees"], moved)


def test_interpreter_script_c_m_and_file(moved, bbrun, tmp_path):
    py = moved / "bin" / "py"
    # buildout's interpreter script parses -c/-m itself (getopt); argv is
    # what it leaves, as in place.
    code = "import sys, BTrees; print(BTrees.__file__); print(sys.argv)"
    lines = run([bbrun, py, "-c", code]).stdout.splitlines()
    assert_under(lines[0], moved)
    assert lines[1] == repr([str(py), "-c", code])

    out = run([bbrun, py, "-m", "json.tool"], input='{"b": 1}').stdout
    assert json.loads(out) == {"b": 1}

    script = tmp_path / "user_script.py"
    script.write_text("import sys, demoapp\nprint(__file__)\nprint(demoapp.__file__)\nprint(sys.argv)\n")
    lines = run([bbrun, py, script, "q"]).stdout.splitlines()
    assert lines[0] == str(script)
    assert_under(lines[1], moved)
    assert lines[2] == repr([str(script), "q"])


def test_runtime_sys_path_additions_are_mapped(moved, frozen_sample, bbrun):
    old_egg_dir = str(frozen_sample["build_root"] / "eggs" / "v5")
    code = (
        "import sys, os\n"
        "sys.path.insert(0, %r)\n"
        "print(sys.path[0])\n"
        "import zope.interface\n"
        "print(zope.interface.__file__)\n"
    ) % (old_egg_dir + "/zope.interface-8.7-py3.11-linux-x86_64.egg",)
    # The old path, added at run time, resolves under B.
    lines = run([bbrun, moved / "bin" / "py", "-c", code]).stdout.splitlines()
    assert_under(lines[0], moved)
    assert_under(lines[1], moved)


def test_subprocess_with_sys_executable_sees_mapping(moved, frozen_sample, bbrun):
    old = str(frozen_sample["build_root"])
    child = "import sys; sys.path[0:0] = [%r + '/src/demoapp']; import demoapp; print(demoapp.__file__)" % old
    code = "import subprocess, sys; print(subprocess.check_output([sys.executable, '-c', %r], text=True).strip())" % child
    out = run([bbrun, moved / "bin" / "py", "-c", code]).stdout.strip()
    assert_under(out, moved)


def test_a_sitecustomize_of_the_callers_runs_as_in_place(moved, bbrun, tmp_path):
    """The script's process loads the sitecustomize it would load in place
    (here one on the caller's PYTHONPATH), not the shim's, and activates
    the mapping itself; its children load the shim's, which activates the
    mapping and hands over to the caller's. The script sees PYTHONPATH as
    its children get it: the shim's directory, then the caller's."""
    user = tmp_path / "user"
    user.mkdir()
    (user / "sitecustomize.py").write_text(
        "import os\nos.environ['USER_SITECUSTOMIZE'] = os.environ.get('USER_SITECUSTOMIZE', '') + 'x'\n"
    )
    probe = (
        "import json, os, sys\n"
        "print(json.dumps([os.environ.get('USER_SITECUSTOMIZE'), 'bbrun_shim' in sys.modules,"
        " getattr(sys.modules.get('sitecustomize'), '__file__', None), os.environ['PYTHONPATH'],"
        " os.environ.get('BBRUN_PYTHONPATH')]))\n"
    )
    code = probe + (
        "import subprocess\n"
        "env = dict(os.environ, USER_SITECUSTOMIZE='')\n"
        "print(subprocess.check_output([sys.executable, '-c', %r], env=env, text=True).strip())\n"
    ) % probe
    env = dict(os.environ, PYTHONPATH=str(user))
    env.pop("USER_SITECUSTOMIZE", None)
    script, child = (json.loads(l) for l in run([bbrun, moved / "bin" / "py", "-c", code], env=env).stdout.splitlines())
    shim = str(moved / ".bbrun" / "shim")
    assert script == ["x", True, str(user / "sitecustomize.py"), shim + ":" + str(user), None]
    assert child == ["x", True, shim + "/sitecustomize.py", shim + ":" + str(user), None]


def test_traceback_shows_script_frames_only(moved, bbrun, tmp_path):
    script = tmp_path / "boom.py"
    script.write_text("def f():\n    raise ValueError('boom')\nf()\n")
    proc = run([bbrun, moved / "bin" / "py", script], check=False)
    assert proc.returncode == 1
    assert "ValueError: boom" in proc.stderr
    assert 'File "%s", line 2, in f' % script in proc.stderr
    assert "bbrun_shim" not in proc.stderr
    assert '"<string>"' not in proc.stderr


# Calls that go 100-300 frames deep and back, 1,500 times: page faults
# taken meanwhile (each frame-stack chunk mapped anew is fresh memory).
DEEP_AND_BACK = r"""
import json, resource, sys
def descend(n):
    return descend(n - 1) if n else 0
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
descend(300)
before = faults()
for _ in range(500):
    for depth in (100, 200, 300):
        descend(depth)
print(json.dumps(faults() - before))
"""


def test_script_frames_start_clear_of_a_frame_stack_chunk_end(moved, bbrun, tmp_path):
    """CPython 3.11-3.14 free a frame-stack chunk as soon as its first
    frame returns, so calls that cross a chunk's end map it again each
    time. In place, a script's frames start near the first chunk's start
    and calls ~30 KB deep cross its end; through bbrun they start ~63 KB
    before a chunk's end, and the same calls map nothing."""
    script = tmp_path / "deep_and_back.py"
    script.write_text(DEEP_AND_BACK)
    in_place = json.loads(run([base_python(), script]).stdout)
    launched = json.loads(run([bbrun, moved / "bin" / "py", script]).stdout)
    assert in_place > 1000  # the chunk mapped again at each crossing
    assert launched < 100


def test_syntax_error_reads_as_in_place(moved, bbrun):
    """A script that does not compile fails with the interpreter's own
    message, no shim frame before it."""
    bad = moved / "bin" / "bad"
    bad.write_text("#!/usr/bin/env python3\nimport sys\ndef f(:\n    pass\n")
    proc = run([bbrun, bad], check=False)
    in_place = run([sys.executable, bad], check=False)
    assert "SyntaxError" in in_place.stderr
    assert (proc.returncode, proc.stderr) == (in_place.returncode, in_place.stderr)


def test_script_rewriting_is_loaded_on_a_code_cache_miss_only(moved, bbrun, tmp_path):
    """bbrun_script (rewrite and compile) is kept out of every launch: a
    script found in the code cache runs without it."""
    probe = moved / "bin" / "probe-loaded"
    probe.write_text("#!/usr/bin/env python3\nimport sys\nprint('bbrun_script' in sys.modules)\n")
    env = dict(os.environ, BBRUN_CACHE_DIR=str(tmp_path / "cache"))
    assert run([bbrun, probe], env=env).stdout == "True\n"  # compiled: a miss
    assert run([bbrun, probe], env=env).stdout == "False\n"  # from the cache


# Rewrites a code-cache entry (bbrun_shim._script_code) to hold another
# code object under the same header, run by the tree's own interpreter.
PLANT = """
import _imp, marshal, os
path = os.environ['PLANT_ENTRY']
data = open(path, 'rb').read()
head, name_len = data[:13], int.from_bytes(data[21:25], 'little')
name = data[25:25 + name_len]
payload = marshal.dumps(compile("print('from the cache')", name.decode(), 'exec'))
salt = 0x62627275_6e636f64
open(path, 'wb').write(head + _imp.source_hash(salt, payload) + data[21:25] + name + payload)
"""


def test_compiled_script_is_reused_for_the_same_source_only(moved, bbrun, tmp_path):
    # The first compile() in a process costs ~1 ms (CPython builds its ast
    # types), so the shim keeps a launched script's code in the per-user
    # cache. An entry must serve exactly the source, path and interpreter
    # it was compiled from, and be ignored when anything differs.
    cache = tmp_path / "cache"
    env = dict(os.environ, BBRUN_CACHE_DIR=str(cache))
    assert demo(bbrun, moved, env=env)["keys"] == ["a", "b"]
    entries = list(cache.glob("code-*.bin"))
    assert len(entries) == 1
    assert entries[0].stat().st_mode & 0o777 == 0o600
    assert str(moved / "bin" / "demo").encode() in entries[0].read_bytes()

    run([bbrun, moved / "bin" / "py", "-c", PLANT], env=dict(env, PLANT_ENTRY=str(entries[0])))
    out = run([bbrun, moved / "bin" / "demo"], env=env).stdout
    assert out == "from the cache\n"  # read from the cache, not compiled

    # Another source at the same path (the script edited): compiled afresh.
    script = moved / "bin" / "demo"
    script.write_bytes(script.read_bytes() + b"# edited\n")
    assert demo(bbrun, moved, env=env)["keys"] == ["a", "b"]
    # The same script at another path (another mapping and __file__): its
    # own entry.
    other = copy_tree(moved, tmp_path / "other")
    assert demo(bbrun, other, env=env)["argv"] == [str(other / "bin" / "demo")]
    named = {p for e in cache.glob("code-*.bin") for p in (moved, other) if str(p / "bin" / "demo").encode() in e.read_bytes()}
    assert named == {moved, other}
    # A torn entry is compiled again, not loaded.
    for e in cache.glob("code-*.bin"):
        e.write_bytes(e.read_bytes()[:40])
    assert demo(bbrun, other, env=env)["keys"] == ["a", "b"]

    # A script whose compilation warns warns at every run, as in place.
    noisy = other / "bin" / "noisy"
    noisy.write_text("#!/usr/bin/env python3\nimport re\nprint(re.match('\\d', '1') is not None)\n")
    loud = dict(env, PYTHONWARNINGS="always")
    for _ in range(2):
        proc = run([bbrun, noisy], env=loud)
        assert proc.stdout == "True\n"
        assert "invalid escape sequence" in proc.stderr

    # A cache directory others can write is never used for code.
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    loose.chmod(0o777)
    assert demo(bbrun, other, env=dict(os.environ, BBRUN_CACHE_DIR=str(loose)))["keys"] == ["a", "b"]
    assert list(loose.iterdir()) == []


def test_exit_code_and_stdin_pass_through(moved, bbrun):
    proc = run([bbrun, moved / "bin" / "demo", "--exit", "7"], check=False)
    assert proc.returncode == 7
    out = run([bbrun, moved / "bin" / "py", "-c", "import sys; print(sys.stdin.read().upper())"], input="hello\n")
    assert out.stdout.strip() == "HELLO"


def test_signals_reach_python_in_the_same_process(moved, bbrun, tmp_path):
    script = tmp_path / "wait.py"
    script.write_text(
        "import os, signal, sys, time\n"
        "def bye(sig, frame):\n"
        # os.write, not print: the signal may land while the main thread is
        # still inside print(pid), and a buffered writer is not reentrant.
        "    os.write(1, b'got %d\\n' % sig); sys.exit(3)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print(os.getpid(), flush=True)\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.Popen([str(bbrun), str(moved / "bin" / "py"), str(script)], stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())
    assert pid == proc.pid  # exec, not a child process
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert "got %d" % signal.SIGTERM in out
    assert proc.returncode == 3

    proc = subprocess.Popen([str(bbrun), str(moved / "bin" / "py"), str(script)], stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == -signal.SIGINT  # KeyboardInterrupt, as python reports it


def test_direct_execution_after_shebang(moved, bbrun):
    bodies = {p.name: p.read_bytes().split(b"\n", 1)[1] for p in (moved / "bin").iterdir()}
    report = json.loads(run([bbrun, "shebang", "--json", moved]).stdout)
    assert {c["body_sha256_before"] for c in report} == {c["body_sha256_after"] for c in report}
    for p in (moved / "bin").iterdir():
        first, body = p.read_bytes().split(b"\n", 1)
        assert first == b"#!" + str(bbrun).encode()
        assert body == bodies[p.name]
    out = demo(bbrun, moved, "d", direct=True)
    assert_under(out["btrees"], moved)
    assert out["argv"] == [str(moved / "bin" / "demo"), "d"]
    out = run([moved / "bin" / "py", "-c", "import demoapp; print(demoapp.__file__)"]).stdout.strip()
    assert_under(out, moved)
    # bin/buildout directly: zc.buildout loads from the collected site-packages.
    out = run([moved / "bin" / "buildout", "--version"], cwd=moved).stdout
    assert "buildout version" in out

    # Restore puts the recorded first lines back.
    run([bbrun, "shebang", "--restore", moved])
    assert (moved / "bin" / "demo").read_bytes().startswith(b"#!/")
    assert b"bbrun" not in (moved / "bin" / "demo").read_bytes().split(b"\n", 1)[0]


def test_env_shebang_and_long_launcher_path(moved, bbrun, tmp_path):
    deep = tmp_path / ("x" * 60) / ("y" * 60) / "bbrun"
    deep.parent.mkdir(parents=True)
    os.symlink(bbrun, deep)
    run([bbrun, "shebang", "--launcher", deep, moved])
    assert (moved / "bin" / "demo").read_bytes().startswith(b"#!/usr/bin/env bbrun\n")
    env = dict(os.environ, PATH="%s:%s" % (bbrun.parent, os.environ["PATH"]))
    out = demo(bbrun, moved, direct=True, env=env)
    assert_under(out["btrees"], moved)


def test_moved_twice_and_two_copies_at_once(frozen_sample, bbrun, tmp_path):
    b = copy_tree(frozen_sample["pristine"], tmp_path / "b")
    c = tmp_path / "later" / "c"
    c.parent.mkdir()
    os.rename(b, c)
    d = tmp_path / "d"
    os.rename(c, d)
    e = copy_tree(d, tmp_path / "e")
    procs = [subprocess.Popen([str(bbrun), str(r / "bin" / "demo")], stdout=subprocess.PIPE, text=True) for r in (d, e)]
    outs = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert_under(outs[0]["btrees"], d)
    assert_under(outs[1]["btrees"], e)


def test_symlink_to_a_script_runs_in_its_tree(moved, bbrun, tmp_path):
    link_dir = tmp_path / "usr-local-bin"
    link_dir.mkdir()
    os.symlink(moved / "bin" / "demo", link_dir / "demo")
    out = json.loads(run([bbrun, link_dir / "demo"]).stdout)
    assert_under(out["btrees"], moved)


def test_buildout_script_runs_after_the_launch_relocated_the_tree(moved, frozen_sample, bbrun):
    # The first launch at the new root rewrote .installed.cfg, so buildout
    # sees its parts where they are and leaves them alone.
    out = run([bbrun, moved / "bin" / "buildout", "--version"], cwd=moved).stdout
    assert "buildout" in out.lower()
    cfg = (moved / ".installed.cfg").read_text()
    assert str(frozen_sample["build_root"]) not in cfg and str(moved) in cfg


# --- errors: each one clear line and a non-zero exit ---------------------


def one_line_error(proc, *needles):
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("bbrun: error: ")
    for n in needles:
        assert n in lines[0], lines[0]


def test_missing_map(moved, bbrun):
    (moved / ".bbrun" / "map.toml").unlink()
    one_line_error(run([bbrun, moved / "bin" / "demo"], check=False), "not inside a frozen tree", "bbrun freeze")


def test_truncated_map(moved, bbrun):
    m = moved / ".bbrun" / "map.toml"
    text = m.read_text()
    m.write_text(text[: text.index("[interpreter]")])
    one_line_error(run([bbrun, moved / "bin" / "demo"], check=False), str(m), "incomplete relocation map")


def test_invalid_toml_map(moved, bbrun):
    m = moved / ".bbrun" / "map.toml"
    m.write_text("format = 1\n[build\nroot = \n")
    one_line_error(run([bbrun, moved / "bin" / "demo"], check=False), str(m), "not a valid relocation map")


def test_script_outside_any_tree(bbrun, tmp_path):
    s = tmp_path / "lonely"
    s.write_text("#!/usr/bin/python3\nprint(1)\n")
    one_line_error(run([bbrun, s], check=False), str(s), "not inside a frozen tree")


def test_interpreter_of_wrong_minor_version(moved, bbrun, tmp_path):
    m = moved / ".bbrun" / "map.toml"
    mm = "%d.%d" % sys.version_info[:2]
    other = "%d.%d" % (sys.version_info[0], sys.version_info[1] + 1)
    m.write_text(m.read_text().replace('major_minor = "%s"' % mm, 'major_minor = "%s"' % other))
    env = dict(os.environ, BBRUN_CACHE_DIR=str(tmp_path / "cache"))
    proc = run([bbrun, moved / "bin" / "demo"], check=False, env=env)
    one_line_error(proc, "no compatible Python found", "need cpython " + other, "need " + other)


def test_explicit_interpreter_that_is_not_python(moved, bbrun, tmp_path):
    env = dict(os.environ, BBRUN_PYTHON="/bin/true")
    one_line_error(run([bbrun, moved / "bin" / "demo"], check=False, env=env), "no compatible Python found", "/bin/true")


# --- freeze ----------------------------------------------------------------


def test_freeze_report_and_map(frozen_sample):
    report = frozen_sample["freeze_report"]
    a = str(frozen_sample["build_root"])
    assert report["root"] == a
    assert sorted(report["scripts"]) == ["bin/buildout", "bin/demo", "bin/py"]
    # The venv's site-packages (zc.buildout lives there) was collected.
    assert [c["original"].endswith("site-packages") for c in report["collected"]] == [True]
    kinds = report["files"]
    assert [e["path"] for e in kinds["installed-cfg"]] == [".installed.cfg"]
    assert [e["path"] for e in kinds["egg-link"]] == ["develop-eggs/demoapp.egg-link"]
    assert kinds["editable-finder"][0]["action"] == "rewrite-on-relocate"
    assert {e["path"] for e in kinds["script"]} == {"bin/buildout", "bin/demo", "bin/py"}
    assert {e["action"] for e in kinds["script"]} == {"mapped-at-run-time"}


@pytest.mark.parametrize("frozen_by", ["link", "real path"])
def test_build_through_symlinked_path(dists, bbrun, tmp_path, frozen_by):
    """buildout realpath()s egg locations but not the buildout directory:
    a tree built through a symlink names both forms, and both must map.
    Frozen by its real path, every file still names the link's spelling:
    freeze takes it from .installed.cfg as the root, instead of collecting
    the whole tree as outside paths."""
    from conftest import build_buildout, make_venv

    venv = tmp_path / "venv"
    make_venv(venv, dists)
    real = tmp_path / "real-build-dir"
    real.mkdir()
    link = tmp_path / "link"
    os.symlink(real, link)
    build_buildout(link / "bo", venv, dists)
    given = link / "bo" if frozen_by == "link" else real / "bo"
    report = json.loads(run([bbrun, "freeze", "--json", given]).stdout)
    assert report["root"] == str(link / "bo")
    noted = any("frozen as %s" % (link / "bo") in n for n in report["notes"])
    assert noted == (frozen_by == "real path")
    m = (real / "bo" / ".bbrun" / "map.toml").read_text()
    assert 'root = "%s"' % (link / "bo") in m
    assert 'root_realpath = "%s"' % (real / "bo") in m
    external = real / "bo" / ".bbrun" / "external"
    assert not external.exists() or not any(p.name.endswith(".egg") for p in external.iterdir())
    script = (real / "bo" / "bin" / "demo").read_text()
    dest = tmp_path / "moved"
    os.rename(real / "bo", dest)
    os.unlink(link)
    os.rename(venv, tmp_path / "venv-gone")
    out = demo(bbrun, dest)
    assert_under(out["btrees"], dest / "eggs")
    assert_under(out["demoapp"], dest / "src")
    # Both spellings of the root were in the script, and both mapped.
    assert str(real / "bo") in script or str(link / "bo") in script


def test_freeze_twice_changes_nothing(moved, bbrun):
    # The moved copy re-frozen: roots from the first freeze are kept.
    before = (moved / ".bbrun" / "map.toml").read_text()
    inv = (moved / ".bbrun" / "inventory.toml").read_text()
    run([bbrun, "freeze", moved])
    assert (moved / ".bbrun" / "map.toml").read_text() == before
    assert (moved / ".bbrun" / "inventory.toml").read_text() == inv
    assert demo(bbrun, moved)["keys"] == ["a", "b"]


def test_freeze_dry_run_writes_nothing(dists, bbrun, tmp_path):
    from conftest import build_buildout, make_venv

    venv = tmp_path / "venv"
    make_venv(venv, dists)
    root = build_buildout(tmp_path / "bo", venv, dists)
    out = run([bbrun, "freeze", "--dry-run", root]).stdout
    assert "would write" in out
    assert "site-packages" in out
    assert not (root / ".bbrun").exists()
    proc = run([bbrun, "freeze", "--no-collect", root], check=False)
    one_line_error(proc, "--no-collect", str(venv / "lib"))
    assert not (root / ".bbrun" / "map.toml").exists()


def test_shared_eggs_cache_and_develop_egg_outside_root(dists, bbrun, tmp_path):
    """Paths outside the root that scripts need are collected by freeze;
    after it, only a compatible Python is needed."""
    from conftest import build_buildout, make_venv

    venv = tmp_path / "venv"
    make_venv(venv, dists)
    shared_eggs = tmp_path / "shared-eggs"
    outside_src = tmp_path / "elsewhere"
    root = build_buildout(tmp_path / "bo", venv, dists)
    # Rebuild with the eggs cache and the develop egg outside the root.
    os.rename(root / "src", outside_src)
    cfg = (root / "buildout.cfg").read_text().replace("develop = src/demoapp", "develop = %s/demoapp" % outside_src)
    (root / "buildout.cfg").write_text(cfg.replace("[buildout]\n", "[buildout]\neggs-directory = %s\n" % shared_eggs, 1))
    run([venv / "bin" / "buildout", "-c", root / "buildout.cfg"], cwd=root)
    assert str(shared_eggs).encode() in (root / "bin" / "demo").read_bytes()

    report = json.loads(run([bbrun, "freeze", "--json", root]).stdout)
    collected = sorted(c["original"] for c in report["collected"])
    # Each egg the scripts use is collected, not the whole cache.
    assert any(c.startswith(str(shared_eggs) + "/v5/BTrees-") for c in collected)
    assert str(outside_src / "demoapp") in collected
    assert any(c.endswith("site-packages") for c in collected)

    dest = tmp_path / "dest"
    os.rename(root, dest)
    for gone in (shared_eggs, outside_src, venv):
        os.rename(gone, str(gone) + "-gone")
    out = demo(bbrun, dest)
    assert_under(out["btrees"], dest / ".bbrun" / "external")
    assert_under(out["demoapp"], dest / ".bbrun" / "external")
    assert out["keys"] == ["a", "b"]


def test_non_python_script_is_refused(moved, bbrun):
    s = moved / "bin" / "hello.sh"
    s.write_text("#!/bin/sh\necho hi\n")
    s.chmod(0o755)
    one_line_error(run([bbrun, s], check=False), str(s), "not a Python script", "/bin/sh")


def test_unrecorded_python_file_in_tree_runs_mapped(moved, frozen_sample, bbrun):
    s = moved / "tool.py"
    s.write_text("import sys\nsys.path[0:0] = ['%s/src/demoapp']\nimport demoapp\nprint(demoapp.__file__)\n" % frozen_sample["build_root"])
    assert_under(run([bbrun, s]).stdout.strip(), moved)


def test_virtualenv_moved_and_run_by_another_interpreter(dists, bbrun, tmp_path):
    """A virtualenv is a tree too: frozen, moved, its console scripts run;
    with an interpreter other than its own (the base one missing on the
    target), its site-packages still come first."""
    from conftest import make_venv

    venv = tmp_path / "a" / "venv"
    make_venv(venv, dists, packages=("BTrees", "zc.buildout==6.0.1"))
    check = venv / "bin" / "check"
    check.write_text("#!%s\nimport sys, BTrees\nprint(sys.prefix)\nprint(BTrees.__file__)\n" % (venv / "bin" / "python"))
    check.chmod(0o755)
    run([bbrun, "freeze", venv])
    dest = tmp_path / "b"
    os.rename(venv, dest)
    lines = run([bbrun, dest / "bin" / "check"]).stdout.splitlines()
    assert lines[0] == str(dest)
    assert_under(lines[1], dest)
    assert "6.0.1" in run([bbrun, dest / "bin" / "buildout", "--version"]).stdout

    other = "/usr/bin/python%d.%d" % sys.version_info[:2]
    if not os.path.exists(other):
        pytest.skip("no second interpreter of this version at %s" % other)
    env = dict(os.environ, BBRUN_PYTHON=other, BBRUN_CACHE_DIR=str(tmp_path / "cache"))
    lines = run([bbrun, dest / "bin" / "check"], env=env).stdout.splitlines()
    assert lines[0] != str(dest)
    assert_under(lines[1], dest)


def test_binary_is_refused(moved, bbrun):
    exe = moved / "bin" / "true"
    exe.write_bytes(open("/bin/true", "rb").read())
    exe.chmod(0o755)
    one_line_error(run([bbrun, exe], check=False), "a binary, not a Python script")
