"""bbrun shim, the part `bbrun buildout` needs: a zc.buildout run at the
target (offline, no compiler) in every Python process it starts.

bbrun_shim.activate() imports this module only when `bbrun buildout` set
BBRUN_KEEP_BUILT or BBRUN_HIDE_SITE, so a script's launch never loads it.
Embedded in the bbrun binary and written beside bbrun_shim.py.
"""

import os
import sys


def keep_built_extensions():
    """smart-recompile for develop eggs. zc.buildout re-registers every
    develop egg with `pip install -e` on each run, and setuptools' editable
    build compiles each C extension again into an empty temporary directory,
    which needs a compiler. Where the in-place module (the one the develop
    egg imports) is newer than all its sources, it is reused as the build's
    output instead, and not copied back onto itself (a truncating rewrite
    would fault a running process that has it mapped). An edited source
    still builds, as `make` would. Hooked at import time, so processes that
    never build pay nothing."""

    class _Finder:
        def find_spec(self, name, path=None, target=None):
            if name != "setuptools.command.build_ext":
                return None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
            else:
                return None
            loader = spec.loader
            exec_module = loader.exec_module

            def exec_and_patch(module):
                exec_module(module)
                _patch_build_ext(module.build_ext)

            loader.exec_module = exec_and_patch
            return spec

    if not any(type(f).__name__ == "_Finder" for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def hide_site_packages():
    """Take this interpreter's own site-packages off sys.path, as the build
    virtualenv had them off. Otherwise a buildout run on the base
    interpreter resolves a recipe's requirements to whatever the target's
    system has installed (a distribution's cffi, typing_extensions...),
    the recipe's `__buildout_signature__` differs from the build's, and
    zc.buildout reinstalls the part though nothing changed."""
    import site

    dirs = [os.path.realpath(d) for d in site.getsitepackages()]
    user = getattr(site, "getusersitepackages", lambda: None)()
    if user:
        dirs.append(os.path.realpath(user))

    def system(p):
        real = os.path.realpath(p or ".")
        return any(real == d or real.startswith(d + os.sep) for d in dirs)

    sys.path[:] = [p for p in sys.path if not system(p)]


def _up_to_date(cmd, ext):
    """(in-place module, build output) when the in-place module is newer
    than every source and dependency of `ext`, else None."""
    if not getattr(cmd, "editable_mode", False):
        return None
    inplace, regular = cmd._get_inplace_equivalent(cmd.get_finalized_command("build_py"), ext)
    try:
        built = os.stat(inplace).st_mtime
        return (inplace, regular) if all(
            os.stat(s).st_mtime <= built for s in list(ext.sources) + list(ext.depends)
        ) else None
    except OSError:
        return None


def _same_file_content(a, b):
    try:
        if os.path.getsize(a) != os.path.getsize(b):
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            return fa.read() == fb.read()
    except OSError:
        return False


def _patch_build_ext(cls):
    build_extension = cls.build_extension
    copy_to_source = cls.copy_extensions_to_source

    def kept_build_extension(self, ext):
        found = _up_to_date(self, ext)
        if found is None:
            return build_extension(self, ext)
        import shutil

        inplace, regular = found
        os.makedirs(os.path.dirname(regular) or ".", exist_ok=True)
        shutil.copy2(inplace, regular)
        sys.stderr.write("bbrun: kept %s (newer than its sources; not compiled again)\n" % inplace)

    def kept_copy_to_source(self):
        build_py = self.get_finalized_command("build_py")
        keep = self.extensions
        self.extensions = [
            e for e in keep if not _same_file_content(*self._get_inplace_equivalent(build_py, e))
        ]
        try:
            copy_to_source(self)
        finally:
            self.extensions = keep

    cls.build_extension = kept_build_extension
    cls.copy_extensions_to_source = kept_copy_to_source
