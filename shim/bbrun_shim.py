"""bbrun shim: maps a frozen tree's build-time paths to where it lives now.

The launcher (`bbrun`) execs the interpreter with this module's directory on
PYTHONPATH and the mapping in the environment:

    BBRUN_PATHMAP   one "OLD<TAB>NEW" pair a line, longest OLD first
    BBRUN_VENV      the tree's root when it is a virtualenv

Every Python process started in that environment (the script, and any child
started with sys.executable) runs `activate()` from sitecustomize:

  * sys.path entries under an old path are rewritten, and sys.path becomes a
    list that rewrites what is added later (`sys.path[0:0] = [...]`);
  * a path hook maps any old entry that slips past (a copy of sys.path taken
    earlier, a path given to a finder directly) to its new place.

The launched script itself runs through `run_main()`: its source is read,
path literals naming old paths are mapped (`'-C', '/old/etc/zope.conf'`), and
it is compiled under its real file name, so __file__, sys.argv, tracebacks
and line numbers are those of the untouched file on disk.

This file is embedded in the bbrun binary and written into each frozen tree
at `.bbrun/shim/`; it must stay importable by any Python 3 and cheap: it runs
before every script.
"""

import os
import sys

_ENV_MAP = "BBRUN_PATHMAP"
_SHIM_DIR = os.path.dirname(os.path.abspath(__file__))
_pairs = None  # [(old, new)], longest old first


def _parse(text):
    pairs = []
    for line in text.split("\n"):
        old, sep, new = line.partition("\t")
        if sep and old:
            pairs.append((old.rstrip("/") or "/", new.rstrip("/") or "/"))
    pairs.sort(key=lambda p: -len(p[0]))
    return pairs


def map_path(path):
    """The path's new location if it lies under an old path, else itself."""
    if not isinstance(path, str) or not _pairs:
        return path
    for old, new in _pairs:
        if path.startswith(old) and (len(path) == len(old) or path[len(old)] == "/"):
            return new + path[len(old):]
    return path


class MappedPath(list):
    """sys.path that maps old paths as they are added."""

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            value = [map_path(p) for p in value]
        else:
            value = map_path(value)
        list.__setitem__(self, index, value)

    def insert(self, index, value):
        list.insert(self, index, map_path(value))

    def append(self, value):
        list.append(self, map_path(value))

    def extend(self, values):
        list.extend(self, [map_path(p) for p in values])

    def __iadd__(self, values):
        self.extend(values)
        return self


def _path_hook(entry):
    mapped = map_path(entry)
    if mapped == entry:
        raise ImportError("not a relocated path")
    for hook in sys.path_hooks:
        if hook is _path_hook:
            continue
        try:
            return hook(mapped)
        except ImportError:
            continue
    raise ImportError("no importer for %r" % mapped)


def _add_venv_site_packages(venv):
    """A frozen virtualenv run by an interpreter that is not its own
    (its bin/python link dangles on this machine): add the venv's
    site-packages as `site` would have, .pth files included."""
    if not venv or os.path.realpath(sys.prefix) == os.path.realpath(venv):
        return
    site_packages = os.path.join(venv, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
    if os.path.isdir(site_packages) and site_packages not in sys.path:
        import site

        site.addsitedir(site_packages)


def _install_import_index():
    """The freeze-time import index (bbrun_index.py), if the tree has one."""
    root = os.environ.get("BBRUN_ROOT")
    if root:
        try:
            import bbrun_index
        except ImportError:
            return
        bbrun_index.install(root)


def activate(pairs=None):
    """Install the mapping in this process; safe to call more than once."""
    global _pairs
    if pairs is None:
        pairs = _parse(os.environ.get(_ENV_MAP, ""))
    _add_venv_site_packages(os.environ.get("BBRUN_VENV"))
    _install_import_index()
    if not pairs:
        return
    _pairs = pairs
    if not isinstance(sys.path, MappedPath):
        sys.path = MappedPath(map_path(p) for p in sys.path)
    if _path_hook not in sys.path_hooks:
        sys.path_hooks.insert(0, _path_hook)
        for key in [k for k in sys.path_importer_cache if map_path(k) != k]:
            del sys.path_importer_cache[key]


def rewrite_source(src):
    """Map old path literals in a script's source (bytes), in one pass so a
    new path is never mapped again."""
    if not _pairs:
        return src
    olds = [(os.fsencode(o), os.fsencode(n)) for o, n in _pairs]
    out = []
    pos = 0
    ends = (b"/", b"'", b'"')
    while True:
        best = None
        for old, new in olds:
            at = src.find(old, pos)
            while at != -1 and src[at + len(old):at + len(old) + 1] not in ends:
                at = src.find(old, at + 1)
            # Longest first: an equal position keeps the longer old path.
            if at != -1 and (best is None or at < best[0]):
                best = (at, old, new)
        if best is None:
            break
        at, old, new = best
        out.append(src[pos:at])
        out.append(new)
        pos = at + len(old)
    if not out:
        return src
    out.append(src[pos:])
    return b"".join(out)


def _strip_shim_frames(hook):
    """An excepthook that hides the shim's own frames, so a traceback reads
    as if the script had been run in place."""
    def excepthook(etype, value, tb):
        while tb is not None and tb.tb_frame.f_code.co_filename in (__file__, "<string>"):
            tb = tb.tb_next
        # The default hook prints value.__traceback__, not its argument.
        if isinstance(value, BaseException):
            value.__traceback__ = tb
        hook(etype, value, tb)
    return excepthook


def run_main():
    """Run sys.argv[1] as the __main__ script with the mapping active.

    Called from `python -c` by the launcher: sys.argv is
    ['-c', SCRIPT, ARGS...] and sys.path[0] is '' (the -c convention).
    """
    activate()
    script = sys.argv[1]
    del sys.argv[0]
    # What `python SCRIPT` would have put first: the script's real directory.
    while _SHIM_DIR in sys.path:
        sys.path.remove(_SHIM_DIR)
    script_dir = os.path.dirname(os.path.realpath(script))
    if sys.path and sys.path[0] == "":
        sys.path[0] = script_dir
    else:
        sys.path.insert(0, script_dir)
    filename = os.path.abspath(script)
    with open(script, "rb") as f:
        source = rewrite_source(f.read())
    code = compile(source, filename, "exec", dont_inherit=True)
    import builtins

    try:
        from _frozen_importlib_external import SourceFileLoader
    except ImportError:
        from importlib.machinery import SourceFileLoader

    main = sys.modules["__main__"]
    namespace = main.__dict__
    namespace.clear()
    namespace.update(
        __name__="__main__",
        __doc__=None,
        __file__=filename,
        __cached__=None,
        __package__=None,
        __spec__=None,
        __loader__=SourceFileLoader("__main__", filename),
        __builtins__=builtins,
    )
    sys.excepthook = _strip_shim_frames(sys.excepthook)
    exec(code, namespace)
