#!/usr/bin/env bash
# Benchmark: `bbrun install` (unpack + verify every file against the
# manifest + relocate + atomic move) against plain `tar -I zstd -xf` of the
# same archive, both into empty directories, in the same run: without a
# flush (`--no-sync` against plain tar) and with one (the default, which
# syncs the filesystem before the final rename, against tar && sync).
#
#   bash benches/install.sh [FILES] [MIB]     (defaults: 40000 files, 300 MiB)
#
# The tree is generated under target/bench-install (kept between runs when
# its parameters match) and packed with `bbrun pack --format tar.zst`.
# Prints each time (best of RUNS) and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

FILES=${1:-40000}
MIB=${2:-300}
RUNS=${RUNS:-5}
work=target/bench-install
tree=$work/tree
archive=$work/tree.tar.zst
stamp=$work/.params

cargo build --release --bin bbrun >/dev/null
bbrun=$(bash benches/release_dir.sh)/bbrun

mkdir -p "$work"
if [ ! -f "$archive" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$FILES $MIB" ]; then
    rm -rf "$tree" "$archive"
    echo "generating $FILES files, ~$MIB MiB in $tree ..."
    python3 - "$tree" "$FILES" "$MIB" <<'EOF'
import os, random, sys
root, files, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(42)
words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(2, 12))) for _ in range(4000)]
# Mostly small text files (Python sources, metadata) in a deep layout,
# plus a few large mostly-incompressible blobs (shared libraries, data).
big_count = 40
big_total = mib * (1 << 20) * 6 // 10
small_total = mib * (1 << 20) - big_total
small_avg = max(64, small_total // files)
os.makedirs(os.path.join(root, ".bbrun"))
for i in range(files):
    d = os.path.join(root, "eggs", "pkg%03d" % (i % 400), "mod%02d" % (i % 17))
    os.makedirs(d, exist_ok=True)
    n = rng.randint(small_avg // 4, small_avg * 7 // 4)
    text = b" ".join(rng.choice(words) for _ in range(n // 7 + 1))[:n]
    with open(os.path.join(d, "m%05d.py" % i), "wb") as f:
        f.write(text)
os.makedirs(os.path.join(root, "parts", "blobs"))
for i in range(big_count):
    with open(os.path.join(root, "parts", "blobs", "b%02d.so" % i), "wb") as f:
        f.write(rng.randbytes(big_total // big_count // 2) + bytes(big_total // big_count // 2))
with open(os.path.join(root, ".bbrun", "map.toml"), "w") as f:
    f.write('format = 1\nbbrun_version = "bench"\n[build]\nroot = "/bench/build"\n'
            'root_realpath = "/bench/build"\n[interpreter]\npath = "/usr/bin/python3"\n'
            'implementation = "cpython"\nversion = "3.11.7"\nmajor_minor = "3.11"\n'
            'cache_tag = "cpython-311"\nsoabi = "cpython-311-x86_64-linux-gnu"\nplatform = "linux-x86_64"\n')
with open(os.path.join(root, ".bbrun", "inventory.toml"), "w") as f:
    f.write("")
EOF
    # bbrun pack writes the manifest into the archive; Python's tarfile
    # (tests/archives.py) is the fallback for a bbrun without pack.
    "$bbrun" pack "$tree" --format tar.zst -o "$archive" >/dev/null ||
        python3 tests/archives.py "$tree" "$archive"
    echo "$FILES $MIB" >"$stamp"
fi
size=$(du -sm "$tree" | cut -f1)
count=$(find "$tree" | wc -l)
echo "archive: $(du -h "$archive" | cut -f1) compressed; tree: $count entries, ${size} MiB"

now() { date +%s.%N; }
min() { echo "if ($1 < $2) $1 else $2" | bc; }
# Every run extracts into fresh directories and all of them are removed
# only at the end: ext4 slows down inode allocation near recently deleted
# inodes, so deleting the previous run's output right before a timed run
# would measure the deletion, not the extraction.
runs=$work/runs
rm -rf "$runs"
mkdir -p "$runs"
sync
best_tar=999999
best_tar_sync=999999
best_bbrun=999999
best_nosync=999999
all_tar=() all_tar_sync=() all_bbrun=() all_nosync=()
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
install() { # DEST [--no-sync]: prints seconds
    local t0 t1
    t0=$(now)
    "$bbrun" install "$archive" "$@" >/dev/null
    t1=$(now)
    sync
    echo "$t1 - $t0" | bc
}
for i in $(seq "$RUNS"); do
    out_tar=$runs/$i-tar
    mkdir "$out_tar"
    # Alternate the order so neither always runs on a warmer cache.
    if [ $((i % 2)) -eq 0 ]; then
        tb=$(install "$runs/$i-bbrun")
        tn=$(install "$runs/$i-nosync" --no-sync)
    fi
    t0=$(now)
    tar -I zstd -xf "$archive" -C "$out_tar"
    t1=$(now)
    # bbrun install flushes the tree before moving it into place (syncfs);
    # tar does not: time its flush too for the like-for-like figure.
    sync
    ts=$(now)
    if [ $((i % 2)) -eq 1 ]; then
        tn=$(install "$runs/$i-nosync" --no-sync)
        tb=$(install "$runs/$i-bbrun")
    fi
    tt=$(echo "$t1 - $t0" | bc)
    tts=$(echo "$ts - $t0" | bc)
    printf 'run %d: tar %.2fs, tar+sync %.2fs | bbrun install --no-sync %.2fs, bbrun install %.2fs\n' \
        "$i" "$tt" "$tts" "$tn" "$tb"
    all_tar+=("$tt"); all_tar_sync+=("$tts"); all_bbrun+=("$tb"); all_nosync+=("$tn")
    best_tar=$(min "$tt" "$best_tar")
    best_tar_sync=$(min "$tts" "$best_tar_sync")
    best_bbrun=$(min "$tb" "$best_bbrun")
    best_nosync=$(min "$tn" "$best_nosync")
done
# The trees must be the same, except what install rewrites.
diff -rq --no-dereference "$runs/1-tar" "$runs/1-bbrun" | grep -v 'map.toml' || true
rm -rf "$runs"
ratio() { echo "scale=2; $1 / $2" | bc; }
echo "best of $RUNS:"
echo "  tar -I zstd -xf           ${best_tar}s   bbrun install --no-sync ${best_nosync}s   ratio $(ratio "$best_nosync" "$best_tar")"
echo "  tar -I zstd -xf && sync   ${best_tar_sync}s   bbrun install           ${best_bbrun}s   ratio $(ratio "$best_bbrun" "$best_tar_sync")"
# One outlier run (a cold or an unusually idle disk) decides a best-of
# figure; the median is the steadier comparison on a shared machine.
m_tar=$(median "${all_tar[@]}"); m_tar_sync=$(median "${all_tar_sync[@]}")
m_bbrun=$(median "${all_bbrun[@]}"); m_nosync=$(median "${all_nosync[@]}")
echo "median of $RUNS:"
echo "  tar -I zstd -xf           ${m_tar}s   bbrun install --no-sync ${m_nosync}s   ratio $(ratio "$m_nosync" "$m_tar")"
echo "  tar -I zstd -xf && sync   ${m_tar_sync}s   bbrun install           ${m_bbrun}s   ratio $(ratio "$m_bbrun" "$m_tar_sync")"
