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

Embedded in the bbrun binary beside bbrun_shim.py; cheap to import: the
index is read at the first lookup of an indexed directory, not before.
"""

import os
import sys

try:
    import _frozen_importlib_external as _ext
except ImportError:  # pragma: no cover - every CPython 3 has it
    from importlib import _bootstrap_external as _ext

_HEADER = "bbrun-import-index 1"
_root = None  # the tree's root now, without a trailing slash
_lines = None  # {reldir: record line}, read lazily
_checked = {}  # {abs dir: mtime_ns it had when first stat'ed, or None}
_loaders = None


def install(root):
    """Put the index's path hook first (once); a no-op without an index."""
    global _root
    if not root or os.environ.get("BBRUN_NO_INDEX"):
        return
    if _hook in sys.path_hooks:
        return
    _root = root.rstrip("/")
    sys.path_hooks.insert(0, _hook)


def _load():
    global _lines
    _lines = {}
    try:
        with open(_root + "/.bbrun/index/dirs.txt", encoding="utf-8") as f:
            text = f.read()
    except (OSError, ValueError):
        return
    lines = text.split("\n")
    if lines[0] != _HEADER:
        return
    for line in lines[1:]:
        rel, sep, rest = line.partition("\t")
        if sep:
            _lines[rel] = rest


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
    if _lines is None:
        _load()
    rest = _lines.get(entry[len(_root) + 1:])
    if rest is None:
        raise ImportError("not indexed")
    mtime, _, rest = rest.partition("\t")
    if not _mtime_ok(entry, mtime):
        raise ImportError("changed since freeze")
    files, _, subs = rest.partition("\t")
    return IndexedFinder(entry, files, subs)


class IndexedFinder(_ext.FileFinder):
    """A FileFinder whose listing comes from the index."""

    def __init__(self, path, files, subs):
        global _loaders
        if _loaders is None:
            _loaders = _ext._get_supported_file_loaders()
        _ext.FileFinder.__init__(self, path, *_loaders)
        self._files = frozenset(files.split("/")) if files else frozenset()
        self._subs = subs
        self._sub_map = None
        self._indexed = True

    def invalidate_caches(self):
        self._indexed = False
        _ext.FileFinder.invalidate_caches(self)

    def _sub(self, name):
        """(mtime, [init files]) of subdirectory `name`, or None."""
        if self._sub_map is None:
            m = {}
            if self._subs:
                for item in self._subs.split("/"):
                    sname, mtime, inits = item.split("\x1f")
                    m[sname] = (mtime, inits.split(",") if inits else ())
            self._sub_map = m
        return self._sub_map.get(name)

    def find_spec(self, fullname, target=None):
        if not self._indexed:
            return _ext.FileFinder.find_spec(self, fullname, target)
        tail = fullname.rpartition(".")[2]
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
                    return self._get_spec(loader_class, fullname, full_path, [base_path], target)
            is_namespace = True
        files = self._files
        for suffix, loader_class in self._loaders:
            if tail + suffix in files:
                full_path = _ext._path_join(self.path, tail + suffix)
                return self._get_spec(loader_class, fullname, full_path, None, target)
        if is_namespace:
            spec = _ext._bootstrap.ModuleSpec(fullname, None)
            spec.submodule_search_locations = [base_path]
            return spec
        return None

    def __repr__(self):
        return "IndexedFinder(%r)" % (self.path,)
