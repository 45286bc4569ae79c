"""A tiny application for bbrun's sample buildout: it imports compiled
extensions (BTrees, zope.interface) and reports where everything loaded from,
so a relocated tree can be checked by its output."""

import json
import os
import sys


def report():
    import BTrees
    import BTrees.OOBTree
    import zope.interface
    import zope.interface._zope_interface_coptimizations as zi_c

    tree = BTrees.OOBTree.OOBTree()
    tree.update({"b": 2, "a": 1})
    return {
        "argv": sys.argv,
        "demoapp": __file__,
        "btrees": BTrees.__file__,
        "btrees_c": BTrees.OOBTree.OOBTree.__module__,
        "zope_interface_c": zi_c.__file__,
        "keys": list(tree.keys()),
        "executable": sys.executable,
        "cwd": os.getcwd(),
    }


def read_config(path):
    with open(path) as f:
        return dict(
            line.split(" = ", 1) for line in f.read().splitlines() if " = " in line and not line.startswith("#")
        )


def main(config=None):
    out = report()
    if config:
        out["config"] = config
        out["settings"] = read_config(config)
    print(json.dumps(out))
    if len(sys.argv) > 1 and sys.argv[1] == "--exit":
        return int(sys.argv[2])
    return 0
