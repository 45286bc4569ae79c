"""bbrun shim: maps a frozen tree's build-time paths to where it lives now.

The launcher (`bbrun`) execs the interpreter with `-c` code that imports
this module and calls `run_main()`, with the mapping in the environment
(and this module's directory on the PYTHONPATH the process's children get):

    BBRUN_PATHMAP   one "OLD<TAB>NEW" pair a line, longest OLD first; a
                    backslash, tab or newline inside a path is escaped as
                    \\\\, \\t, \\n
    BBRUN_VENV      the tree's root when it is a virtualenv
    BBRUN_SITE      the build environment's site dirs (old paths, one a
                    line), set when a fallback interpreter runs through the
                    launcher's view
    BBRUN_LAUNCHER  the launcher, for children that run a tree's script
    BBRUN_PYTHONPATH  the PYTHONPATH for the script's children: this
                    directory first

Every Python process started in that environment runs `activate()`: the
script from `run_main()`, any child (started with sys.executable) from
sitecustomize:

  * sys.path entries under an old path are rewritten, and sys.path becomes a
    list that rewrites what is added later (`sys.path[0:0] = [...]`);
  * a path hook maps any old entry that slips past (a copy of sys.path taken
    earlier, a path given to a finder directly) to its new place.

The launched script itself runs through `run_main()`: its source is read,
path literals naming old paths are mapped (`'-C', '/old/etc/zope.conf'`), and
it is compiled under its real file name, so __file__, sys.argv, tracebacks
and line numbers are those of the untouched file on disk.

Every such process also installs the import index (the second half of this
file): finders that answer imports from the directory listing recorded at
freeze instead of searching each sys.path entry.

This file is embedded in the bbrun binary and written into each frozen tree
at `.bbrun/shim/`; it must stay importable by any Python 3 and cheap: it runs
before every script. The mapping and the index are one module, past the
usual size of one, because every module a process loads costs it ~0.1 ms
of start-up before its first line runs (finding, reading and checking the
byte-code file), and every process of a launched tree loads this one.
"""

import os
import sys

try:
    import _frozen_importlib_external as _ext
except ImportError:  # pragma: no cover - every CPython 3 has it
    from importlib import _bootstrap_external as _ext

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
    """The freeze-time import index (below), if the tree has one: its path
    hook, or None."""
    install_index(os.environ.get("BBRUN_ROOT"))
    return _index_hook if _index_hook in sys.path_hooks else None


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
        MAGIC_NUMBER = _ext.MAGIC_NUMBER
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
    # The launcher kept this directory off this process's PYTHONPATH (it
    # activates here, not in sitecustomize); children get it, and with it
    # the mapping.
    children = os.environ.pop("BBRUN_PYTHONPATH", None)
    if children is not None:
        os.environ["PYTHONPATH"] = children
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
        __loader__=_ext.SourceFileLoader("__main__", filename),
        __builtins__=builtins,
    )
    if _CHUNKED_FRAME_STACK:
        _run_script.__code__ = _run_script.__code__.replace(co_stacksize=_ROOM_SLOTS)
    _run_script(code, namespace)


# CPython 3.11 to 3.14 keep frames on a stack of chunks (the first 16 KB)
# and free a chunk as soon as the frame at its start returns. A program
# whose calls go back and forth across a chunk's end maps and unmaps that
# chunk every time (python/cpython#142183), and an import stack does: the
# Zope stack run one call deeper than its script maps 16 KB ~8,000 times,
# +8% wall time; as launched before this, ~850-1,250 times, in place ~1,400.
# Where a script's frames start decides it, so the launcher picks the
# place: _run_script reserves 8,300 stack slots it never uses (the frame
# does not fit the first chunk, so it gets a 128 KB chunk to itself and
# touches only the pages it uses), and the script's frames start right
# after them, ~63 KB from the chunk's end. The script sees one more of the
# shim's frames (hidden from tracebacks like the others), nothing else.
_CHUNKED_FRAME_STACK = (sys.implementation.name == "cpython"
                        and (3, 11) <= sys.version_info[:2] <= (3, 14))
_ROOM_SLOTS = 8300


def _run_script(code, namespace):
    exec(code, namespace)


# ---------------------------------------------------------------------------
# The import index: answer imports from the listing recorded at freeze.
#
# `bbrun freeze` writes `.bbrun/index/dirs.txt`: for each directory on the
# scripts' sys.path (and each package directory below them) its mtime, its
# file names, and its subdirectories with their mtimes and `__init__` files.
# Python's own per-directory finder stats the directory on every lookup and
# the candidate file after; for a buildout with 80 eggs that is ~80 stats
# per top-level import. Here a path hook, first in sys.path_hooks, gives
# each indexed directory a finder that answers from the record: one stat of
# the directory per process (its mtime must be the recorded one, else the
# directory is searched the normal way), no stat per lookup.
#
# The finder is a FileFinder subclass and builds its specs with FileFinder's
# own code and loaders, in FileFinder's order (package, then extension,
# source, bytecode module, then namespace portion), so a name resolves to the
# same file with or without the index. `importlib.invalidate_caches()` turns
# the index off for the rest of the process (code that writes modules at run
# time calls it). BBRUN_NO_INDEX=1 disables it.
#
# Even answered from memory, an import still costs PathFinder one Python
# call per entry of its search path, and buildout scripts put their eggs
# before the standard library: every `import json` walks all of them, every
# `zope.x` walks every egg's zope/ directory. MergedFinder, a meta-path
# finder just before PathFinder, answers from one table per search path
# (sys.path for top-level names; the __path__ of a package spanning several
# directories for its submodules), merged from the index records of the
# path's entries: name -> the first entry holding it as a regular module or
# package. That entry's finder (the object PathFinder would ask, from
# sys.path_importer_cache) is asked for the spec, so the spec is the same.
# Entries that are not indexed are asked live, in their place. A name that is
# only a namespace portion among the indexed entries, or that nothing offers
# as a regular module, is left to PathFinder (None): it then does its full,
# exact search. A table is built at the first import that needs it (a
# process that imports nothing pays nothing) and dropped when sys.path,
# sys.path_hooks or sys.path_importer_cache (the object) change, or when an
# entry's cached finder is not the one the table holds.
#
# Cheap to carry: the index is read at the first lookup of an indexed
# directory, not before, and the first lookups bisect the sorted file; only
# a process that asks for many directories parses it whole.

_INDEX_HEADER = b"bbrun-import-index 1\n"
_index_root = None  # the tree's root now, without a trailing slash
_index_data = None  # the index file's bytes (b"" without a usable one), read lazily
_index_lines = None  # {reldir: record}, parsed once a process has asked enough
_index_asked = 0
# Up to this many directories are looked up by bisecting the (sorted)
# file, ~5 us each; past it the whole file is parsed once (~1 ms for a
# Plone tree). A script that imports little (`bin/py -c pass` still asks
# for the venv's site-packages while site runs) never pays the parse.
_BISECT_LOOKUPS = 48
_dir_mtimes = {}  # {abs dir: mtime_ns it had when first stat'ed, or None}
_loaders = None  # [(suffix, loader class)], FileFinder's order; built once
_suffixes = None  # the suffixes in it
_inits = None  # "__init__" + each of them
# What cache_from_source appends to a source module's stem, without
# sys.pycache_prefix or -O (checked at each use): see _with_cached.
_PYC_TAIL = (None if sys.implementation.cache_tag is None
             else "." + sys.implementation.cache_tag + ".pyc")


def install_index(root):
    """Put the index's path hook first (once); a no-op without an index."""
    global _index_root
    if not root or os.environ.get("BBRUN_NO_INDEX"):
        return
    if _index_hook in sys.path_hooks:
        return
    _index_root = root.rstrip("/")
    sys.path_hooks.insert(0, _index_hook)
    # Finders made before the hook stay in the cache for the whole process:
    # site-packages of a virtualenv inside the tree (the Plone 6 layout, or
    # a frozen venv) gets one when site imports this shim. Plain
    # FileFinders of the tree's directories go, so the hook is asked.
    cache = sys.path_importer_cache
    inside = _index_root + "/"
    for key in [k for k, f in cache.items()
                if type(f) is _ext.FileFinder and isinstance(k, str) and k.startswith(inside)]:
        del cache[key]
    meta = sys.meta_path
    if MergedFinder not in meta and _ext.PathFinder in meta:
        meta.insert(meta.index(_ext.PathFinder), MergedFinder)


def _load_index():
    global _index_data
    _index_data = b""
    try:
        with open(_index_root + "/.bbrun/index/dirs.txt", "rb") as f:
            data = f.read()
    except OSError:
        return
    if data.startswith(_INDEX_HEADER):
        _index_data = data


def _index_record(rel):
    """The index record (MTIME, FILES, SUBDIRS joined by TABs) of directory
    `rel` (relative to the root), or None."""
    global _index_asked, _index_lines
    if _index_lines is not None:
        return _index_lines.get(rel)
    if _index_data is None:
        _load_index()
    _index_asked += 1
    if _index_asked > _BISECT_LOOKUPS:
        _index_lines = {}
        try:
            text = _index_data.decode("utf-8")
        except ValueError:
            return None
        for line in text.split("\n")[1:]:
            name, sep, rest = line.partition("\t")
            if sep:
                _index_lines[name] = rest
        return _index_lines.get(rel)
    try:
        key = rel.encode("utf-8") + b"\t"
    except ValueError:
        return None  # not UTF-8: freeze indexes no such name
    # Freeze sorts the lines; "REL\t" keys sort as the lines do, since a
    # name holds no control character.
    data = _index_data
    lo, hi = len(_INDEX_HEADER), len(data)
    while lo < hi:
        start = data.rfind(b"\n", lo, (lo + hi) // 2) + 1 or lo
        end = data.find(b"\n", start, hi)
        if end < 0:
            end = hi
        tab = data.find(b"\t", start, end)
        here = data[start:tab + 1] if tab >= 0 else data[start:end]
        if here == key:
            try:
                return data[tab + 1:end].decode("utf-8")
            except ValueError:
                return None
        if here < key:
            lo = end + 1
        else:
            hi = start
    return None


def _mtime_ok(path, recorded):
    """Has directory `path` the recorded mtime? One stat per process."""
    now = _dir_mtimes.get(path, False)
    if now is False:
        try:
            now = os.stat(path).st_mtime_ns
        except OSError:
            now = None
        _dir_mtimes[path] = now
    if now is None:
        return False
    recorded = int(recorded)
    # An archive keeps whole seconds: an installed tree's directories have
    # the recorded second and no fraction. (A later change gets a fraction.)
    return now == recorded or (now % 1000000000 == 0 and now // 1000000000 == recorded // 1000000000)


def _index_hook(entry):
    if not isinstance(entry, str) or not entry.startswith(_index_root + "/"):
        raise ImportError("not in the indexed tree")
    rest = _index_record(entry[len(_index_root) + 1:])
    if rest is None:
        raise ImportError("not indexed")
    mtime, _, rest = rest.partition("\t")
    if not _mtime_ok(entry, mtime):
        raise ImportError("changed since freeze")
    files, _, subs = rest.partition("\t")
    return IndexedFinder(entry, files, subs)


def _build_loaders():
    global _loaders, _suffixes, _inits
    # FileFinder's own code makes the list from the loader details.
    pairs = _ext.FileFinder("/", *_ext._get_supported_file_loaders())._loaders
    _suffixes = frozenset(suffix for suffix, _ in pairs)
    _inits = frozenset("__init__" + suffix for suffix in _suffixes)
    _loaders = pairs
    return pairs


class IndexedFinder(_ext.FileFinder):
    """A FileFinder whose listing comes from the index."""

    def __init__(self, path, files, subs):
        _ext.FileFinder.__init__(self, path)
        # The (suffix, loader) list FileFinder would build from the loader
        # details, built once per process instead of once per directory.
        self._loaders = list(_loaders or _build_loaders())
        self._files = frozenset(files.split("/")) if files else frozenset()
        self._subs = subs
        self._sub_map = None
        self._indexed = True
        # Every name this directory can answer (set by _top_names): a
        # search of the whole sys.path for a name that is nowhere (an
        # optional import) asks every entry's finder, and this is the
        # cheapest way to say no.
        self._names = None

    def invalidate_caches(self):
        self._indexed = False
        _ext.FileFinder.invalidate_caches(self)

    def _sub(self, name):
        """(mtime, [init files]) of subdirectory `name`, or None."""
        if self._sub_map is None:
            self._load_subs()
        return self._sub_map.get(name)

    def _load_subs(self):
        m = {}
        if self._subs:
            for item in self._subs.split("/"):
                sname, mtime, inits = item.split("\x1f")
                m[sname] = (mtime, inits.split(",") if inits else ())
        self._sub_map = m

    def _top_names(self):
        """(regular, portions): the top-level names this directory offers as
        a module or package, and those it offers only as a namespace
        portion, by the index (what find_spec would answer, FileFinder's
        order inside the directory)."""
        suffixes = _suffixes
        inits = _inits
        regular = set()
        for fname in self._files:
            i = fname.find(".")
            if i > 0 and fname[i:] in suffixes:
                regular.add(fname[:i])
        if self._sub_map is None:
            self._load_subs()
        portions = []
        for sname, (_, sub_inits) in self._sub_map.items():
            if "." in sname:
                continue
            if inits.isdisjoint(sub_inits):
                portions.append(sname)
            else:
                regular.add(sname)
        portions = [p for p in portions if p not in regular]
        self._names = frozenset(regular).union(portions)
        return regular, portions

    def find_spec(self, fullname, target=None):
        if not self._indexed:
            return _ext.FileFinder.find_spec(self, fullname, target)
        tail = fullname.rpartition(".")[2]
        if self._names is not None and tail not in self._names:
            return None
        is_namespace = False
        sub = self._sub(tail)
        if sub is not None:
            base_path = _ext._path_join(self.path, tail)
            if not _mtime_ok(base_path, sub[0]):
                # Its __init__ files may have changed: ask the file system.
                return _ext.FileFinder.find_spec(self, fullname, target)
            inits = sub[1]
            for suffix, loader_class in self._loaders:
                if "__init__" + suffix in inits:
                    full_path = _ext._path_join(base_path, "__init__" + suffix)
                    return _with_cached(self._get_spec(loader_class, fullname, full_path, [base_path], target))
            is_namespace = True
        files = self._files
        for suffix, loader_class in self._loaders:
            if tail + suffix in files:
                full_path = _ext._path_join(self.path, tail + suffix)
                return _with_cached(self._get_spec(loader_class, fullname, full_path, None, target))
        if is_namespace:
            spec = _ext._bootstrap.ModuleSpec(fullname, None)
            spec.submodule_search_locations = [base_path]
            return spec
        return None

    def __repr__(self):
        return "IndexedFinder(%r)" % (self.path,)


def _with_cached(spec):
    """`spec` with its `cached` filled in as ModuleSpec would compute it
    (cache_from_source of the origin), in plain string operations: the
    lazy computation costs ~4 us of path splitting and joining per module,
    a tenth of what finding it from the index costs. Anything unusual
    (pycache_prefix, -O, a sourceless or extension module) is left to
    ModuleSpec."""
    origin = spec.origin
    if _PYC_TAIL is not None and origin.endswith(".py") and sys.pycache_prefix is None \
            and not sys.flags.optimize:
        head, _, tail = origin.rpartition("/")
        head = head.rstrip("/")
        if head and len(tail) > 3:
            spec.cached = head + "/__pycache__/" + tail[:-3] + _PYC_TAIL
    return spec


_MISSING = object()


class _Table:
    """One search path (sys.path, or a namespace package's __path__) merged
    into one dict, built from the index records of its entries."""

    __slots__ = ("names", "live", "first_live")

    def __init__(self, entries):
        # {name: [regular item or None, namespace-portion items before it...]}
        # an item: (position in the path, entry, its IndexedFinder)
        self.names = names = {}
        # Entries that are not indexed, asked live in their place:
        # (position, entry, None).
        self.live = []
        get = _ext.PathFinder._path_importer_cache
        prefix = _index_root + "/"
        for pos, entry in enumerate(entries):
            if not isinstance(entry, (str, bytes)):
                continue  # PathFinder skips it too
            finder = None
            if isinstance(entry, str) and entry.startswith(prefix):
                finder = get(entry)  # what PathFinder would do: hooks, cached
                if type(finder) is not IndexedFinder or not finder._indexed:
                    finder = None
            if finder is None:
                self.live.append((pos, entry, None))
                continue
            item = (pos, entry, finder)
            regular, portions = finder._top_names()
            for name in regular:
                rec = names.get(name)
                if rec is None:
                    names[name] = [item]
                elif rec[0] is None:
                    rec[0] = item
            for name in portions:
                rec = names.get(name)
                if rec is None:
                    names[name] = [None, item]
                elif rec[0] is None:
                    rec.append(item)
        self.first_live = self.live[0][0] if self.live else len(entries)

    def find_spec(self, fullname, tail, target, cache):
        """The spec PathFinder would return, or None when only PathFinder
        can tell (namespace portions, nothing found, a changed entry)."""
        rec = self.names.get(tail)
        if rec is None:
            items = self.live  # in no indexed entry: only the others can have it
        else:
            regular = rec[0]
            if regular is None:
                return None  # namespace portions only: PathFinder's full search
            if len(rec) == 1 and regular[0] < self.first_live:
                items = rec
            else:
                items = sorted(rec[1:] + [i for i in self.live if i[0] < regular[0]])
                items.append(regular)
        for _, entry, finder in items:
            if finder is None:
                found = _ext.PathFinder._path_importer_cache(entry)
                if found is None:
                    continue
            else:
                found = cache.get(entry, _MISSING)
                if found is not finder:
                    # Someone replaced the entry's finder: start over.
                    MergedFinder._reset()
                    return None
            spec = found.find_spec(fullname, target)
            if spec is not None and spec.loader is not None:
                return spec
        # Nothing regular where the table said, or a namespace portion, or
        # nothing at all: PathFinder decides.
        return None


class MergedFinder:
    """Imports from one table per search path (see the module docstring):
    sys.path for top-level names, and the __path__ of every package that
    spans several directories (a namespace package: zope, plone, Products)
    for its submodules. Only ever answers what PathFinder would; anything it
    cannot vouch for it leaves to PathFinder by returning None."""

    _off = False
    _hooks = None  # sys.path_hooks (a copy) the tables were built with
    _cache = None  # the sys.path_importer_cache they were built with
    _top = None  # the _Table of sys.path
    _top_path = None  # the sys.path (a copy) it was built from
    _nested = {}  # {tuple(package __path__): _Table}

    @classmethod
    def _reset(cls):
        cls._hooks = list(sys.path_hooks)
        cls._cache = sys.path_importer_cache
        cls._top = cls._top_path = None
        cls._nested = {}

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if cls._off:
            return None
        if sys.path_hooks != cls._hooks or sys.path_importer_cache is not cls._cache:
            cls._reset()
        if path is None:
            table = cls._top
            if table is None or sys.path != cls._top_path:
                if not isinstance(sys.path, list):
                    return None
                cls._top_path = snapshot = list(sys.path)
                table = cls._top = _Table(snapshot)
            return table.find_spec(fullname, fullname, target, cls._cache)
        if type(path) is list and len(path) < 2:
            # One directory (a regular package's __path__): PathFinder would
            # return what that directory's finder finds. Asked here when it
            # is an index finder, that costs PathFinder's search loop less
            # on each of a package's submodules; nothing found, or a
            # namespace portion, is PathFinder's to answer.
            finder = cls._cache.get(path[0]) if path and type(path[0]) is str else None
            if type(finder) is IndexedFinder and finder._indexed:
                spec = finder.find_spec(fullname, target)
                if spec is not None and spec.loader is not None:
                    return spec
            return None
        try:
            key = tuple(path)
        except TypeError:
            return None
        if len(key) < 2:
            return None
        table = cls._nested.get(key)
        if table is None:
            table = cls._nested[key] = _Table(key)
        return table.find_spec(fullname, fullname.rpartition(".")[2], target, cls._cache)

    @classmethod
    def find_distributions(cls, context=None):
        # importlib.metadata (and its backport) asks every meta-path finder
        # for distributions before PathFinder searches the path. This one
        # has none to add; asked, it fits the search's directory cache to
        # the path first.
        _fit_metadata_caches(context)
        return ()

    @classmethod
    def invalidate_caches(cls):
        # importlib.invalidate_caches(): modules may have been written; the
        # indexed finders turn themselves off too.
        cls._off = True
        cls._top = cls._top_path = None
        cls._nested = {}


# importlib.metadata's path search keeps one FastPath per path entry (the
# entry's metadata listing, reused while the directory's mtime is the same)
# in an LRU cache of 128. A buildout's sys.path is longer (a Plone 6 site:
# 228 entries) and a search walks it in order, so each entry is evicted
# before it is asked again: every distribution() or version() call lists
# every directory again (~5 ms on a Plone path; 3 calls in
# `import Products.CMFPlone`, more at an instance's start). Sized to the
# path, the listings are reused as they are on a path of up to 128
# entries; what a search finds is the same.
_METADATA_MODULES = ("importlib.metadata", "importlib_metadata")
_fitted = {}  # {module name: (FastPath.__new__ put in, its maxsize)}


def _fit_metadata_caches(context):
    path = getattr(context, "path", None)
    if path is None:
        path = sys.path
    try:
        need = 2 * len(path)
    except TypeError:
        return
    for name in _METADATA_MODULES:
        fast_path = getattr(sys.modules.get(name), "FastPath", None)
        if not isinstance(fast_path, type):
            continue
        new = fast_path.__dict__.get("__new__")
        fitted = _fitted.get(name)
        if fitted is not None and fitted[0] is new and fitted[1] >= need:
            continue
        info = getattr(new, "cache_info", None)
        wrapped = getattr(new, "__wrapped__", None)
        if info is None or wrapped is None:
            continue  # not the LRU-cached __new__ of Python 3.10+: leave it
        size = info().maxsize
        if size is None or size >= need:
            _fitted[name] = (new, sys.maxsize if size is None else size)
            continue
        import functools
        bigger = functools.lru_cache(maxsize=need)(wrapped)
        try:
            fast_path.__new__ = bigger
        except (AttributeError, TypeError):
            continue
        _fitted[name] = (bigger, need)
