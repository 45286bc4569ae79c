"""bbrun shim: maps a frozen tree's build-time paths to where it lives now.

The launcher (`bbrun`) execs the interpreter with this module's directory on
PYTHONPATH and the mapping in the environment:

    BBRUN_PATHMAP   one "OLD<TAB>NEW" pair a line, longest OLD first; a
                    backslash, tab or newline inside a path is escaped as
                    \\\\, \\t, \\n
    BBRUN_VENV      the tree's root when it is a virtualenv
    BBRUN_SITE      the build environment's site dirs (old paths, one a
                    line), set when a fallback interpreter runs through the
                    launcher's view
    BBRUN_LAUNCHER  the launcher, for children that run a tree's script

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
# Set by `bbrun buildout` for its buildout run and every process it starts.
_ENV_KEEP_BUILT = "BBRUN_KEEP_BUILT"
# Set by `bbrun buildout` when the tree was built in a virtualenv that is
# gone and this interpreter is its base (or another compatible one).
_ENV_HIDE_SITE = "BBRUN_HIDE_SITE"
_SHIM_DIR = os.path.dirname(os.path.abspath(__file__))
_pairs = None  # [(old, new)], longest old first


_UNESCAPE = {b"\\": b"\\", b"t": b"\t", b"n": b"\n"}


def _unescape(field):
    r"""Undo the launcher's escaping (map_check::encode_pathmap): `\\`,
    `\t`, `\n` inside a path stand for a backslash, tab and newline."""
    if b"\\" not in field:
        return os.fsdecode(field)
    out = []
    i = 0
    while i < len(field):
        c = field[i:i + 1]
        if c == b"\\" and i + 1 < len(field):
            out.append(_UNESCAPE.get(field[i + 1:i + 2], field[i:i + 2]))
            i += 2
        else:
            out.append(c)
            i += 1
    return os.fsdecode(b"".join(out))


def _parse(raw):
    """Pairs from BBRUN_PATHMAP (bytes, as in the environment; str accepted
    too): non-UTF-8 bytes come back as surrogate escapes, as os.fsdecode
    gives them for any path."""
    if isinstance(raw, str):
        raw = os.fsencode(raw)
    pairs = []
    for line in raw.split(b"\n"):
        old, sep, new = line.partition(b"\t")
        if sep and old:
            old, new = _unescape(old), _unescape(new)
            pairs.append((old.rstrip("/") or "/", new.rstrip("/") or "/"))
    pairs.sort(key=lambda p: -len(p[0]))
    return pairs


def _environ_map():
    environb = getattr(os, "environb", None)
    if environb is not None:
        return environb.get(os.fsencode(_ENV_MAP), b"")
    return os.environ.get(_ENV_MAP, "")


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


def _add_build_site_dirs(text):
    """Under the launcher's interpreter view (a fallback interpreter with
    its own site dirs hidden), add the build environment's site dirs at
    their new place, `.pth` files included, as `site` did in place."""
    if not text:
        return
    import site

    for d in text.split("\n"):
        d = map_path(d)
        if d and d not in sys.path and os.path.isdir(d):
            site.addsitedir(d)


def tree_of(path):
    """The root of the frozen tree holding `path` (a file), or None."""
    d = os.path.dirname(os.path.abspath(path))
    while True:
        if os.path.isfile(os.path.join(d, ".bbrun", "map.toml")):
            return d
        up = os.path.dirname(d)
        if up == d:
            return None
        d = up


_FLAG_OPTIONS = (
    ("debug", "d"), ("inspect", "i"), ("optimize", "O"), ("dont_write_bytecode", "B"),
    ("no_user_site", "s"), ("no_site", "S"), ("verbose", "v"), ("bytes_warning", "b"),
    ("quiet", "q"), ("safe_path", "P"),
)


def interpreter_options():
    """The command-line options this interpreter was started with, as far
    as they show (sys.flags, -W, -X, and -u, which leaves stdout without a
    buffer): what a handed-over child must be started with again."""
    opts = []
    for flag, letter in _FLAG_OPTIONS:
        n = int(getattr(sys.flags, flag, 0))
        if n:
            opts.append("-" + letter * n)
    if type(getattr(sys.stdout, "buffer", None)).__name__ == "FileIO":
        opts.append("-u")
    opts.extend("-W" + w for w in sys.warnoptions)
    for key, value in getattr(sys, "_xoptions", {}).items():
        opts.append("-X" + key if value is True else "-X%s=%s" % (key, value))
    return opts


def hand_over_tree_script():
    """A child started as [sys.executable, 'ROOT/bin/other', ...] runs a
    frozen tree's script without the launcher: it would get this
    environment's mapping (maybe another tree's) and no literal mapping.
    Hand it to the launcher, which plans it for its own tree, with the
    options the child was started with (`-u`, `-O`, `-X dev`) passed on in
    BBRUN_CHILD_OPTIONS. The launched process itself runs from `-c`, so it
    never comes here twice."""
    launcher = os.environ.get("BBRUN_LAUNCHER")
    argv = getattr(sys, "argv", None)
    if not launcher or not argv or argv[0] in ("", "-c", "-m", "-"):
        return
    if tree_of(argv[0]) is None:
        return
    opts = [o for o in interpreter_options() if "\n" not in o]
    env = dict(os.environ, BBRUN_CHILD_OPTIONS="\n".join(opts))
    try:
        os.execve(launcher, [launcher, argv[0]] + list(argv[1:]), env)
    except OSError:
        pass


def _install_import_index():
    """The freeze-time import index (bbrun_index.py), if the tree has one:
    its path hook, or None."""
    root = os.environ.get("BBRUN_ROOT")
    if root:
        try:
            import bbrun_index
        except ImportError:
            return None
        bbrun_index.install(root)
        if bbrun_index._hook in sys.path_hooks:
            return bbrun_index._hook
    return None


def activate(pairs=None):
    """Install the mapping in this process; safe to call more than once."""
    global _pairs
    if pairs is None:
        pairs = _parse(_environ_map())
    _add_venv_site_packages(os.environ.get("BBRUN_VENV"))
    keep_built, hide_site = os.environ.get(_ENV_KEEP_BUILT), os.environ.get(_ENV_HIDE_SITE)
    if keep_built or hide_site:
        # Only under `bbrun buildout`: kept out of this module, which
        # every launch loads (its size is start-up time).
        import bbrun_build

        if keep_built:
            bbrun_build.keep_built_extensions()
        if hide_site:
            bbrun_build.hide_site_packages()
    index_hook = _install_import_index()
    if pairs:
        _pairs = pairs
        if not isinstance(sys.path, MappedPath):
            sys.path = MappedPath(map_path(p) for p in sys.path)
        hooks = sys.path_hooks
        if _path_hook not in hooks:
            # After the index's hook: most entries a process asks about are
            # the tree's own directories, which the index answers, and a
            # hook that declines raises ImportError (~2 us each).
            hooks.insert(hooks.index(index_hook) + 1 if index_hook else 0, _path_hook)
            for key in [k for k in sys.path_importer_cache if map_path(k) != k]:
                del sys.path_importer_cache[key]
    # Last, so what their .pth files add is mapped too.
    _add_build_site_dirs(os.environ.get("BBRUN_SITE"))


# The launched script's code object, cached per user. The first compile()
# in a process costs ~1 ms before any parsing (CPython builds its ast
# types on first use), more than the rest of the shim together; a script
# run in place never pays it, since the interpreter compiles a file
# without the compile() builtin. So a compiled script is kept in the
# launcher's per-user cache directory (BBRUN_CODE_CACHE, set only to a
# directory the launcher checked is the user's own and private), one file
# per script path and interpreter:
#   MAGIC_NUMBER, optimize level, source hash, payload hash,
#   len(filename), filename, marshal(code)
# The source hash covers the script as read and the mapping, which decide
# what bbrun_script.rewrite_source makes of it: a hit skips the rewrite
# too (~0.3 ms for a script naming 80 eggs). Anything that does not match
# exactly (another source, mapping, path, interpreter or -O level, a torn
# or foreign file) is rewritten and compiled afresh.
_CODE_SALT = 0x6262_7275_6e63_6f64  # "bbruncod"


def _script_code(raw, filename):
    """The __main__ script's code: `raw` (its bytes) with the old path
    literals mapped, compiled for `filename`; from the code cache when this
    source was compiled for this path and mapping before."""
    cache = os.environ.get("BBRUN_CODE_CACHE")
    try:
        import _imp
        import marshal
        from _frozen_importlib_external import MAGIC_NUMBER
        hashed = _imp.source_hash
    except (ImportError, AttributeError):
        cache = None
    if not cache:
        return _compiled(raw, filename, None)
    name = os.fsencode(filename)
    # A path holds no NUL byte: the mapping ends where the source begins.
    mapping = "\n".join("%s\t%s" % p for p in _pairs or ()).encode("utf-8", "surrogateescape")
    head = MAGIC_NUMBER + bytes([sys.flags.optimize & 0xFF]) + hashed(_CODE_SALT, mapping + b"\0" + raw)
    entry = os.path.join(cache, "code-%s.bin" % hashed(_CODE_SALT, head[:5] + name).hex())
    try:
        with open(entry, "rb") as f:
            data = f.read()
        fixed = len(head) + 12
        if data[:len(head)] == head and data[fixed:fixed + len(name)] == name \
                and int.from_bytes(data[len(head) + 8:fixed], "little") == len(name):
            payload = data[fixed + len(name):]
            if hashed(_CODE_SALT, payload) == data[len(head):len(head) + 8]:
                return marshal.loads(payload)
    except (OSError, ValueError, EOFError, TypeError):
        pass
    return _compiled(raw, filename, (entry, head, name))


def _compiled(raw, filename, store):
    """A cache miss: rewrite and compile (bbrun_script.py, loaded only
    then), storing the code at `store` (entry, head, name) if given."""
    script_module = sys.modules.get("bbrun_script")
    if script_module is None:
        # run_main has taken this directory off sys.path by now.
        sys.path.insert(0, _SHIM_DIR)
        try:
            import bbrun_script as script_module
        finally:
            sys.path.remove(_SHIM_DIR)
    return script_module.compile_script(raw, filename, _pairs or (), store, _CODE_SALT)


def _strip_shim_frames(hook):
    """An excepthook that hides the shim's own frames, so a traceback reads
    as if the script had been run in place."""
    def excepthook(etype, value, tb):
        while tb is not None and (tb.tb_frame.f_code.co_filename == "<string>"
                                  or os.path.dirname(tb.tb_frame.f_code.co_filename) == _SHIM_DIR):
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
    # Before the compile: a SyntaxError in the script reads as in place.
    sys.excepthook = _strip_shim_frames(sys.excepthook)
    with open(script, "rb") as f:
        code = _script_code(f.read(), filename)
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
    exec(code, namespace)
