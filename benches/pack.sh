#!/usr/bin/env bash
# Benchmark: `bbrun pack --format tar.zst --level 3` (which also hashes every
# file for the manifest) against `tar -I 'zstd -3' -cf` on the same large
# tree, in the same run. Prints both times (best of RUNS) and the ratio
# bbrun/tar; the goal is a ratio <= 1.
#
#   bash benches/pack.sh            # ~30,000 files, ~300 MB under target/
#   FILES=5000 RUNS=1 bash benches/pack.sh   # smaller, quicker
#
# The tree is generated once (deterministic content: same seed, same bytes)
# and reused while FILES is unchanged. It is not a frozen Python tree; a
# minimal relocation map is written so `bbrun pack` accepts it.
set -euo pipefail
cd "$(dirname "$0")/.."

FILES=${FILES:-30000}
RUNS=${RUNS:-3}
work=target/bench-pack
tree=$work/tree-$FILES
mkdir -p "$work"

command -v zstd >/dev/null || { echo "zstd not installed (apt-get install zstd)" >&2; exit 1; }
[ -n "${BBRUN:-}" ] || cargo build --release -q -p bbrun
bbrun=${BBRUN:-$(bash benches/release_dir.sh)/bbrun}

if [ ! -f "$tree/.done" ]; then
    rm -rf "$tree"
    echo "generating $FILES files under $tree ..." >&2
    python3 - "$tree" "$FILES" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(20261124)
# A 8 MiB pool: mostly source-like text (compresses ~4x), some random
# bytes (incompressible, like .so files and wheels). Files are slices.
words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(2, 12)))
         for _ in range(4000)]
text = bytearray()
while len(text) < 6 << 20:
    line = b" ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))
    text += b"    " * rng.randint(0, 3) + line + b"\n"
pool = bytes(text[: 6 << 20]) + rng.randbytes(2 << 20)
def size():
    r = rng.random()
    if r < 0.84:
        return rng.randint(100, 6000)          # small: .py, metadata
    if r < 0.99:
        return rng.randint(6000, 45000)        # medium
    return rng.randint(200_000, 700_000)       # large: .so, data
os.makedirs(os.path.join(root, ".bbrun"))
total = 0
for i in range(n):
    d = os.path.join(root, "lib", "pkg%03d" % (i % 400), "sub%02d" % (i % 7))
    os.makedirs(d, exist_ok=True)
    s = size()
    off = rng.randrange(0, len(pool) - s)
    p = os.path.join(d, "mod%05d.py" % i)
    with open(p, "wb") as f:
        f.write(pool[off:off + s])
    if i % 50 == 0:
        os.chmod(p, 0o755)
    total += s
for i in range(0, n, 1000):
    os.symlink("../lib/pkg%03d" % (i % 400), os.path.join(root, ".bbrun", "link%05d" % i))
print("%d files, %.0f MB" % (n, total / 1e6), file=sys.stderr)
EOF
    cat > "$tree/.bbrun/map.toml" <<'EOF'
format = 1
bbrun_version = "0.1.0"
[build]
root = "/bench/build"
root_realpath = "/bench/build"
[interpreter]
path = "/usr/bin/python3"
implementation = "cpython"
version = "3.11.2"
major_minor = "3.11"
cache_tag = "cpython-311"
soabi = "cpython-311-x86_64-linux-gnu"
platform = "linux-x86_64"
EOF
    touch "$tree/.done"
fi

du -sh --apparent-size "$tree" >&2
# Warm the page cache so both sides read from memory. (Through cat: GNU
# tar writing straight to /dev/null skips reading the files.)
tar -cf - -C "$tree" . | cat >/dev/null

best() { sort -n | head -1; }
time_it() { # prints seconds
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    python3 -c "print($t1 - $t0)"
}

t_tar=(); t_bbrun=()
for _ in $(seq "$RUNS"); do
    rm -f "$work/tar.tar.zst" "$work/bbrun.tar.zst"
    t_tar+=("$(time_it tar -I 'zstd -3' -cf "$work/tar.tar.zst" -C "$tree" .)")
    t_bbrun+=("$(time_it "$bbrun" pack "$tree" --format tar.zst --level 3 -o "$work/bbrun.tar.zst")")
done
tar_s=$(printf '%s\n' "${t_tar[@]}" | best)
bbrun_s=$(printf '%s\n' "${t_bbrun[@]}" | best)
ratio=$(python3 -c "print($bbrun_s / $tar_s)")
printf 'tree:       %s files, %s\n' "$FILES" "$(du -sh --apparent-size "$tree" | cut -f1)"
printf 'tar+zstd-3: %.2f s  (%s bytes)\n' "$tar_s" "$(stat -c %s "$work/tar.tar.zst")"
printf 'bbrun pack: %.2f s  (%s bytes, manifest included)\n' "$bbrun_s" "$(stat -c %s "$work/bbrun.tar.zst")"
printf 'ratio bbrun/tar: %.2f  (best of %s runs each)\n' "$ratio" "$RUNS"
BBRUN_PACK_TIMING=1 "$bbrun" pack "$tree" --format tar.zst --level 3 -o "$work/bbrun.tar.zst" 2>&1 >/dev/null | tail -1
