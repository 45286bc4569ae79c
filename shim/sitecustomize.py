"""bbrun: activate the path mapping in every child process of a launched
script (the script's own process activates it in bbrun_shim.run_main), then
hand over to the sitecustomize this one shadows, if any."""

import os as _os
import sys as _sys


def _bbrun_activate():
    try:
        import bbrun_shim
    except ImportError:
        return
    bbrun_shim.hand_over_tree_script()
    bbrun_shim.activate()


def _bbrun_chain():
    # Our directory comes first on sys.path; run the next sitecustomize so a
    # distribution's own (Debian ships one) keeps working.
    here = _os.path.dirname(_os.path.abspath(__file__))
    try:
        # Already loaded at startup; `importlib.machinery` would cost an
        # import of the importlib package (and warnings) in every process.
        from _frozen_importlib_external import PathFinder
    except ImportError:
        from importlib.machinery import PathFinder

    rest = [p for p in _sys.path if _os.path.abspath(p or ".") != here]
    spec = PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = type(_sys)("sitecustomize")
        module.__file__ = spec.origin
        spec.loader.exec_module(module)


_bbrun_activate()
_bbrun_chain()
del _bbrun_activate, _bbrun_chain
