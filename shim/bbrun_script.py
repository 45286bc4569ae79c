"""bbrun shim, the part a launch needs only when the launched script's
code is not in the code cache: map the old path literals in its source,
compile it, and store the code for the next launch.

Kept out of bbrun_shim.py, which every Python process of a launched tree
loads (its size is start-up time); imported only on a cache miss. The
cache entry's format is described beside `_script_code` in bbrun_shim.py,
which reads what `compile_script` writes.
"""

import os


def _literal_safe(path):
    """A new path as it may appear inside a quoted string literal: a
    backslash, quote, tab or newline in it (legal in a Linux path) is
    escaped, and so is a byte that is not UTF-8, so the literal still
    parses and holds the path."""
    for raw, esc in ((b"\\", b"\\\\"), (b"\n", b"\\n"), (b"\t", b"\\t"), (b"\r", b"\\r"),
                     (b"'", b"\\'"), (b'"', b'\\"')):
        path = path.replace(raw, esc)
    try:
        path.decode("utf-8")
    except UnicodeDecodeError:
        # Source is UTF-8: a byte that is not becomes the escape of the
        # surrogate os.fsencode turns back into that byte.
        text = path.decode("utf-8", "surrogateescape")
        path = "".join("\\u%04x" % ord(c) if 0xDC80 <= ord(c) <= 0xDCFF else c for c in text).encode("utf-8")
    return path


def rewrite_source(src, pairs):
    """Map the old path literals of `pairs` [(old, new)], longest old
    first, in a script's source (bytes), in one pass so a new path is never
    mapped again."""
    if not pairs:
        return src
    olds = [(os.fsencode(o), _literal_safe(os.fsencode(n))) for o, n in pairs]
    ends = (b"/", b"'", b'"')

    def find(old, at):
        """The next occurrence of `old` from `at` that ends a path component."""
        at = src.find(old, at)
        while at != -1 and src[at + len(old):at + len(old) + 1] not in ends:
            at = src.find(old, at + 1)
        return at

    # Each old path's next occurrence, found again only once passed: a
    # buildout script names its 80 eggs under one root, and searching every
    # old path to the end after each of them made this quadratic.
    nexts = [find(old, 0) for old, _ in olds]
    out = []
    pos = 0
    while True:
        best = -1
        for i, at in enumerate(nexts):
            # Longest first: an equal position keeps the longer old path.
            if at != -1 and (best == -1 or at < nexts[best]):
                best = i
        if best == -1:
            break
        at = nexts[best]
        old, new = olds[best]
        out.append(src[pos:at])
        out.append(new)
        pos = at + len(old)
        for i, (o, _) in enumerate(olds):
            if nexts[i] != -1 and nexts[i] < pos:
                nexts[i] = find(o, pos)
    if not out:
        return src
    out.append(src[pos:])
    return b"".join(out)


def compile_script(raw, filename, pairs, store, salt):
    """`raw` (the script's bytes) with its old path literals mapped,
    compiled for `filename`; stored in the code cache when `store`
    (entry path, header, encoded filename) is given."""
    import warnings

    source = rewrite_source(raw, pairs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = compile(source, filename, "exec", dont_inherit=True)
    if caught:
        # A warning at compile time (an invalid escape sequence) shows at
        # every run in place: such a script is compiled at every run here
        # too, outside the recording, so the user's filters decide.
        return compile(source, filename, "exec", dont_inherit=True)
    if store is not None:
        import marshal

        _store_code(*store, marshal.dumps(code), salt)
    return code


def _store_code(entry, head, name, payload, salt):
    """Write a cache entry atomically (temp file, rename); a cache that
    cannot be written costs only speed."""
    import _imp

    tmp = "%s.bbrun-tmp.%d" % (entry, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with open(fd, "wb") as f:
            f.write(head + _imp.source_hash(salt, payload) + len(name).to_bytes(4, "little") + name + payload)
        os.replace(tmp, entry)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
