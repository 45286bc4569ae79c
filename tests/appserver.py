"""A real application server for tests and benchmarks (no pytest needed):
a Zope 5 buildout (plone.recipe.zope2instance, ~80 eggs, compiled
extensions), built offline from distributions fetched from PyPI once, and
helpers to start it, talk to it over HTTP on the loopback and stop it.

Every wait here is bounded in time; every server listens on 127.0.0.1 only.
"""

import base64
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from support import CACHE, run

# Everything a Zope 5 buildout needs, pinned as `pip download` resolved it
# for CPython 3.11 (all wheels; C extensions are manylinux builds). Pinning
# every distribution, not only the top ones, keeps the tree the same from
# one fetch to the next. Top-level choices: Zope 5.14.2 is the newest 5.x
# and works with ZODB 6.0.x; plone.recipe.zope2instance 9.1.0 supports
# Zope 5 and zc.buildout 6.0.1; waitress serves the WSGI app.
ZOPE_REQUIREMENTS = [
    "AccessControl==7.5",
    "Acquisition==6.4",
    "AuthEncoding==6.1",
    "beautifulsoup4==4.15.0",
    "BTrees==6.5",
    "cffi==2.1.1",
    "Chameleon==4.6.0",
    "DateTime==6.0",
    "DocumentTemplate==5.4",
    "ExtensionClass==6.5",
    "MultiMapping==5.1",
    "multipart==2.0.1",
    "packaging==26.4",
    "Paste==3.10.1",
    "PasteDeploy==3.1.0",
    "Persistence==5.5",
    "persistent==6.9",
    "pip==26.3",
    "platformdirs==4.14.9",
    "plone.recipe.zope2instance==9.1.0",
    "pycparser==3.12",
    "python-dotenv==1.2.4",
    "python-gettext==5.0",
    "pytz==2026.6",
    "RestrictedPython==9.0",
    "roman==5.2",
    "setuptools==84.2.1",
    "soupsieve==4.1.3",
    "transaction==5.1",
    "typing_extensions==4.16.0",
    "waitress==3.0.2",
    "WebOb==1.8.11",
    "WebTest==3.0.7",
    "wheel==0.48.0",
    "WSGIProxy2==0.5.1",
    "z3c.pt==5.2",
    "zc.buildout==6.0.1",
    "zc.lockfile==4.0",
    "zc.recipe.egg==6.0.0",
    "ZConfig==4.3",
    "zdaemon==5.2.1",
    "ZEO==6.2",
    "zExceptions==6.0",
    "ZODB==6.0.1",
    "zodbpickle==4.5",
    "Zope==5.14.2",
    "zope.annotation==6.0",
    "zope.browser==4.0",
    "zope.browsermenu==6.0",
    "zope.browserpage==6.0",
    "zope.browserresource==6.0",
    "zope.cachedescriptors==6.0",
    "zope.component==7.1",
    "zope.configuration==7.1",
    "zope.container==7.3",
    "zope.contentprovider==7.1",
    "zope.contenttype==6.0",
    "zope.datetime==6.0",
    "zope.deferredimport==6.1.1",
    "zope.deprecation==6.0",
    "zope.dottedname==7.1",
    "zope.event==6.2",
    "zope.exceptions==6.0",
    "zope.filerepresentation==7.0",
    "zope.globalrequest==3.0",
    "zope.hookable==8.4",
    "zope.i18n==6.0",
    "zope.i18nmessageid==8.4",
    "zope.interface==8.7",
    "zope.lifecycleevent==6.0",
    "zope.location==6.0",
    "zope.pagetemplate==6.1",
    "zope.processlifetime==4.0",
    "zope.proxy==7.3",
    "zope.ptresource==6.0",
    "zope.publisher==8.1",
    "zope.schema==8.1",
    "zope.security==8.4",
    "zope.sequencesort==6.0",
    "zope.site==6.0",
    "zope.size==6.0",
    "zope.structuredtext==6.0",
    "zope.tal==6.0",
    "zope.tales==7.0",
    "zope.testbrowser==8.1",
    "zope.testing==6.2",
    "zope.traversing==6.0",
    "zope.viewlet==6.0",
]

ADMIN = ("admin", "admin")

BUILDOUT_CFG = """\
# A Zope 5 application server, built offline: find-links is a local
# directory of wheels and the index an empty one, so nothing is fetched.
[buildout]
parts = instance buildout-script
find-links = {dists}
index = {dists}/no-index
newest = false
allow-picked-versions = false
versions = versions

[instance]
recipe = plone.recipe.zope2instance
eggs = Zope
user = {user}
http-address = 127.0.0.1:{port}
# Without Plone there is no temporary storage product to mount.
zodb-temporary-storage = off
wsgi = on

[buildout-script]
recipe = zc.recipe.egg
eggs = zc.buildout
scripts = buildout

[versions]
{versions}
"""


def fetch_wheels(d, requirements):
    """`d` as a local find-links directory holding the pinned
    `requirements`, filled from PyPI once and reused offline after (a
    stamp file records what it holds)."""
    d = Path(d)
    stamp = d / ".requirements"
    want = "\n".join(requirements)
    if not (stamp.exists() and stamp.read_text() == want):
        d.mkdir(parents=True, exist_ok=True)
        # Wheels only: fetching never builds anything.
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", d]
        run(cmd + list(requirements))
        stamp.write_text(want)
    (d / "no-index").mkdir(exist_ok=True)
    return d


def fetch_zope_dists(dest=None):
    """The local find-links directory for the Zope buildout."""
    return fetch_wheels(dest or CACHE / "zope-dists", ZOPE_REQUIREMENTS)


def versions_section(requirements):
    """`name = version` lines for a buildout [versions] part."""
    return "\n".join(r.replace("==", " = ") for r in requirements)


def offline(cmd):
    """`cmd` inside a fresh network namespace (`unshare -n`) when we may
    make one (tests run as root), so "offline" is enforced, not assumed."""
    if os.geteuid() == 0 and shutil.which("unshare"):
        return ["unshare", "-n"] + [str(c) for c in cmd]
    return [str(c) for c in cmd]


def buildout_cfg(dists, port, user="%s:%s" % ADMIN):
    return BUILDOUT_CFG.format(dists=dists, port=port, user=user, versions=versions_section(ZOPE_REQUIREMENTS))


def build_zope_buildout(root, venv, dists, port):
    """Write the Zope buildout at `root` and build it with `venv`'s
    buildout (tests/support.py make_venv over the zope dists), offline."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "buildout.cfg").write_text(buildout_cfg(dists, port))
    run(offline([Path(venv) / "bin" / "buildout", "-c", root / "buildout.cfg"]), cwd=root)
    return root


def run_buildout(root, prefix=(), check=True):
    """Re-run a tree's own `bin/buildout` offline (`prefix` is e.g.
    `[bbrun]`), e.g. after set_port. Returns the CompletedProcess."""
    root = Path(root)
    return run(offline([*prefix, root / "bin" / "buildout", "-c", root / "buildout.cfg"]), cwd=root, check=check)


def set_port(root, port):
    """Change the instance's port in buildout.cfg (re-run buildout to
    apply it)."""
    cfg = Path(root) / "buildout.cfg"
    lines = cfg.read_text().splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.startswith("http-address =")]
    assert len(hits) == 1, "%s: expected one http-address line" % cfg
    lines[hits[0]] = "http-address = 127.0.0.1:%d\n" % port
    cfg.write_text("".join(lines))


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now, below the
    kernel's ephemeral range: a port recorded in a tree is reused long after
    it was chosen, and there it must not collide with the source port of
    some short-lived client connection."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(10000, max(low, 10001))
        if not port_in_use(port):
            return port
    raise AssertionError("no free port found on 127.0.0.1 below %d" % low)


def port_in_use(port):
    with socket.socket() as s:
        # As the server will: connections in TIME_WAIT do not count,
        # a listener does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _request(port, path, data=None, auth=ADMIN, timeout=10):
    url = "http://127.0.0.1:%d%s" % (port, path)
    req = urllib.request.Request(url, data=data)
    if auth:
        token = base64.b64encode(("%s:%s" % auth).encode()).decode()
        req.add_header("Authorization", "Basic " + token)
    # No proxy from the environment may see loopback traffic.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def http_get(port, path="/", auth=ADMIN, timeout=10):
    """(status, body) of GET http://127.0.0.1:PORT/PATH."""
    return _request(port, path, auth=auth, timeout=timeout)


def http_post(port, path, fields, auth=ADMIN, timeout=10):
    data = urllib.parse.urlencode(fields).encode()
    return _request(port, path, data=data, auth=auth, timeout=timeout)


def add_folder(port, folder_id, auth=ADMIN):
    """Create an OFS Folder in the instance's ZODB root through the ZMI."""
    status, body = http_post(port, "/manage_addProduct/OFSP/manage_addFolder", {"id": folder_id}, auth=auth)
    assert status == 200, "manage_addFolder %s: HTTP %d\n%s" % (folder_id, status, body[:2000])


def has_object(port, folder_id, auth=ADMIN):
    """Whether the ZODB root holds an object `folder_id` (asked over HTTP)."""
    status, body = http_get(port, "/%s/getId" % folder_id, auth=auth)
    return status == 200 and body.strip() == folder_id


def _log_tail(path, limit=6000):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        return "(no output: %s)" % e
    return text[-limit:]


def start_instance(cmd, cwd, port, env=None, timeout=90):
    """Start a server (e.g. `[bbrun, root/'bin/instance', 'fg']`) in its own
    process group and wait until HTTP on 127.0.0.1:PORT answers. Fails with
    the server's output if it exits first or does not answer in time. The
    returned Popen has `log` (the output file); stop it with stop_instance."""
    assert not port_in_use(port), "port %d on 127.0.0.1 is already taken: not starting %s" % (port, cmd)
    log = Path(tempfile.mkstemp(prefix="instance-", suffix=".log")[1])
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proc.log = log
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            output = stop_instance(proc)
            raise AssertionError("%s exited (%d) before serving on port %d:\n%s" % (cmd, code, port, output))
        try:
            http_get(port, "/", auth=None, timeout=2)
            return proc
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            output = stop_instance(proc)
            raise AssertionError("%s: no HTTP on port %d after %ds:\n%s" % (cmd, port, timeout, output))
        time.sleep(0.2)


def stop_instance(proc, sig=signal.SIGINT, timeout=20):
    """Stop the server's process group: `sig` first (SIGINT by default: Zope
    then shuts down as on Ctrl-C, writes Data.fs.index and removes its pid
    file, where SIGTERM kills it on the spot and leaves both stale), then
    SIGTERM, then SIGKILL, each after `timeout` seconds. Returns the
    server's output (its temporary log file is removed)."""
    for s in (sig, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, s)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    # Children that outlived the leader (same group) go too.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    output = _log_tail(proc.log)
    Path(proc.log).unlink(missing_ok=True)
    return output


def run_in_instance(root, code, prefix=(), timeout=120):
    """Run Python `code` with the instance's `app` (the ZODB root) bound,
    through `bin/instance run` (the instance must not be running: the
    FileStorage is locked while it is). `prefix` is e.g. `[bbrun]`.
    Returns the CompletedProcess."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(code)
    try:
        return run([*prefix, Path(root) / "bin" / "instance", "run", f.name], timeout=timeout)
    finally:
        os.unlink(f.name)


def tree_stats(root):
    """(files, bytes) under root, symlinks not followed."""
    files = size = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(dirpath, name)).st_size
    return files, size
