"""bbrun import index: answer imports from the listing recorded at freeze.

`bbrun freeze` writes `.bbrun/index/dirs.txt`: for each directory on the
scripts' sys.path (and each package directory below them) its mtime, its
file names, and its subdirectories with their mtimes and `__init__` files.
Python's own per-directory finder stats the directory on every lookup and
the candidate file after; for a buildout with 80 eggs that is ~80 stats
per top-level import. Here a path hook, first in sys.path_hooks, gives
each indexed directory a finder that answers from the record: one stat of
the directory per process (its mtime must be the recorded one, else the
directory is searched the normal way), no stat per lookup.

The finder is a FileFinder subclass and builds its specs with FileFinder's
own code and loaders, in FileFinder's order (package, then extension,
source, bytecode module, then namespace portion), so a name resolves to the
same file with or without the index. `importlib.invalidate_caches()` turns
the index off for the rest of the process (code that writes modules at run
time calls it). BBRUN_NO_INDEX=1 disables it.

Even answered from memory, an import still costs PathFinder one Python
call per entry of its search path, and buildout scripts put their eggs
before the standard library: every `import json` walks all of them, every
`zope.x` walks every egg's zope/ directory. MergedFinder, a meta-path
finder just before PathFinder, answers from one table per search path
(sys.path for top-level names; the __path__ of a package spanning several
directories for its submodules), merged from the index records of the
path's entries: name -> the first entry holding it as a regular module or
package. That entry's finder (the object PathFinder would ask, from
sys.path_importer_cache) is asked for the spec, so the spec is the same.
Entries that are not indexed are asked live, in their place. A name that is
only a namespace portion among the indexed entries, or that nothing offers
as a regular module, is left to PathFinder (None): it then does its full,
exact search. A table is built at the first import that needs it (a
process that imports nothing pays nothing) and dropped when sys.path,
sys.path_hooks or sys.path_importer_cache (the object) change, or when an
entry's cached finder is not the one the table holds.

Embedded in the bbrun binary beside bbrun_shim.py; cheap to import: the
index is read at the first lookup of an indexed directory, not before, and
the first lookups bisect the sorted file; only a process that asks for
many directories parses it whole.
"""

import os
import sys

try:
    import _frozen_importlib_external as _ext
except ImportError:  # pragma: no cover - every CPython 3 has it
    from importlib import _bootstrap_external as _ext

_HEADER = b"bbrun-import-index 1\n"
_root = None  # the tree's root now, without a trailing slash
_data = None  # the index file's bytes (b"" without a usable one), read lazily
_lines = None  # {reldir: record}, parsed once a process has asked enough
_asked = 0
# Up to this many directories are looked up by bisecting the (sorted)
# file, ~5 us each; past it the whole file is parsed once (~1 ms for a
# Plone tree). A script that imports little (`bin/py -c pass` still asks
# for the venv's site-packages while site runs) never pays the parse.
_BISECT_LOOKUPS = 48
_checked = {}  # {abs dir: mtime_ns it had when first stat'ed, or None}
_loaders = None  # [(suffix, loader class)], FileFinder's order; built once
_suffixes = None  # the suffixes in it
_inits = None  # "__init__" + each of them
# What cache_from_source appends to a source module's stem, without
# sys.pycache_prefix or -O (checked at each use): see _with_cached.
_PYC_TAIL = (None if sys.implementation.cache_tag is None
             else "." + sys.implementation.cache_tag + ".pyc")


def install(root):
    """Put the index's path hook first (once); a no-op without an index."""
    global _root
    if not root or os.environ.get("BBRUN_NO_INDEX"):
        return
    if _hook in sys.path_hooks:
        return
    _root = root.rstrip("/")
    sys.path_hooks.insert(0, _hook)
    # Finders made before the hook stay in the cache for the whole process:
    # site-packages of a virtualenv inside the tree (the Plone 6 layout, or
    # a frozen venv) gets one when site imports this shim. Plain
    # FileFinders of the tree's directories go, so the hook is asked.
    cache = sys.path_importer_cache
    inside = _root + "/"
    for key in [k for k, f in cache.items()
                if type(f) is _ext.FileFinder and isinstance(k, str) and k.startswith(inside)]:
        del cache[key]
    meta = sys.meta_path
    if MergedFinder not in meta and _ext.PathFinder in meta:
        meta.insert(meta.index(_ext.PathFinder), MergedFinder)


def _load():
    global _data
    _data = b""
    try:
        with open(_root + "/.bbrun/index/dirs.txt", "rb") as f:
            data = f.read()
    except OSError:
        return
    if data.startswith(_HEADER):
        _data = data


def _record(rel):
    """The index record (MTIME, FILES, SUBDIRS joined by TABs) of directory
    `rel` (relative to the root), or None."""
    global _asked, _lines
    if _lines is not None:
        return _lines.get(rel)
    if _data is None:
        _load()
    _asked += 1
    if _asked > _BISECT_LOOKUPS:
        _lines = {}
        try:
            text = _data.decode("utf-8")
        except ValueError:
            return None
        for line in text.split("\n")[1:]:
            name, sep, rest = line.partition("\t")
            if sep:
                _lines[name] = rest
        return _lines.get(rel)
    try:
        key = rel.encode("utf-8") + b"\t"
    except ValueError:
        return None  # not UTF-8: freeze indexes no such name
    # Freeze sorts the lines; "REL\t" keys sort as the lines do, since a
    # name holds no control character.
    data = _data
    lo, hi = len(_HEADER), len(data)
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
    now = _checked.get(path, False)
    if now is False:
        try:
            now = os.stat(path).st_mtime_ns
        except OSError:
            now = None
        _checked[path] = now
    if now is None:
        return False
    recorded = int(recorded)
    # An archive keeps whole seconds: an installed tree's directories have
    # the recorded second and no fraction. (A later change gets a fraction.)
    return now == recorded or (now % 1000000000 == 0 and now // 1000000000 == recorded // 1000000000)


def _hook(entry):
    if not isinstance(entry, str) or not entry.startswith(_root + "/"):
        raise ImportError("not in the indexed tree")
    rest = _record(entry[len(_root) + 1:])
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
        prefix = _root + "/"
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
            return None  # one directory: PathFinder asks one finder anyway
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
    def invalidate_caches(cls):
        # importlib.invalidate_caches(): modules may have been written; the
        # indexed finders turn themselves off too.
        cls._off = True
        cls._top = cls._top_path = None
        cls._nested = {}
