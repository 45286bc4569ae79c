#!/usr/bin/env bash
# Relativize the RPATHs of N shared objects: bbrun's freeze pass (one
# process, in-place rewrite, durable atomic replacement) against
# `patchelf --set-rpath` run once per file, on identical fresh trees, in
# the same run. Each side runs R times; the medians and their ratio are
# printed (this machine is shared, single runs are noisy).
#
#   bash benches/rpath.sh [N] [R]     (default 300 files, 3 rounds;
#                                      needs cc and patchelf)
#
# patchelf is for this comparison only; bbrun never runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-300}
rounds=${2:-3}
command -v patchelf >/dev/null || { echo "patchelf not found (apt-get install -y patchelf)" >&2; exit 2; }

cargo build -q --release -p bbrun-freeze --example relativize
tool=$(bash benches/release_dir.sh)/examples/relativize

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/build/root"
mkdir -p "$root/parts/lib"
cat > "$work/m.c" <<'C'
int answer(void) { return 42; }
int twice(int x) { return 2 * x; }
C
# One small extension-like object with an absolute RPATH into the tree.
cc -shared -fPIC -O2 -o "$work/m.so" "$work/m.c" -Wl,-rpath,"$root/parts/lib:/usr/local/lib"
mkdir -p "$work/template"
for i in $(seq 1 "$n"); do
    d="$work/template/eggs/pkg$i.egg/pkg$i"
    mkdir -p "$d"
    cp "$work/m.so" "$d/_speedups.cpython-311-x86_64-linux-gnu.so"
done
so=eggs/pkg1.egg/pkg1/_speedups.cpython-311-x86_64-linux-gnu.so

fresh() { # a tree at the build path, as built
    rm -rf "$root/eggs" && cp -a "$work/template/eggs" "$root/eggs" && sync
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# The floor of atomic replacement, for scale: read each file, write it to a
# temp file beside it, rename it over; one syncfs. No ELF work at all.
cc -O2 -o "$work/replace_floor" benches/support/replace_floor.c

p_times=() b_times=() inner_times=() f_times=()
for _ in $(seq 1 "$rounds"); do
    # patchelf: one process per file, the way a shell loop or a Python
    # wrapper drives it, each file given the value bbrun computes; then a
    # sync, since bbrun's writes are durable when it returns.
    fresh
    start=$(date +%s.%N)
    find "$root/eggs" -name '*.so' -print0 |
        while IFS= read -r -d '' f; do
            patchelf --set-rpath '$ORIGIN/../../../parts/lib:/usr/local/lib' "$f"
        done
    sync
    end=$(date +%s.%N)
    p_times+=("$(echo "$end - $start" | bc -l)")
    want=$(readelf -d "$root/$so" | grep -o 'path: \[.*\]')

    # bbrun: the whole pass (walk, magic check, parse, rewrite, durable
    # atomic replacement), as a process and as timed inside it.
    fresh
    start=$(date +%s.%N)
    read -r changed inner < <("$tool" "$root")
    end=$(date +%s.%N)
    b_times+=("$(echo "$end - $start" | bc -l)")
    inner_times+=("$inner")
    got=$(readelf -d "$root/$so" | grep -o 'path: \[.*\]')
    [ "$got" = "$want" ] || { echo "results differ: bbrun $got, patchelf $want" >&2; exit 1; }
    [ "$changed" = "$n" ] || { echo "bbrun rewrote $changed of $n files" >&2; exit 1; }

    fresh
    f_times+=("$(find "$root/eggs" -name '*.so' -print0 | xargs -0 "$work/replace_floor" | awk '{print $3}')")
done

p=$(printf '%s\n' "${p_times[@]}" | median)
b=$(printf '%s\n' "${b_times[@]}" | median)
i=$(printf '%s\n' "${inner_times[@]}" | median)
printf 'files: %d, rounds: %d (medians)\n' "$n" "$rounds"
printf 'patchelf, once per file, + sync: %.3f s   (all: %s)\n' "$p" "${p_times[*]}"
printf 'bbrun freeze RPATH pass:         %.3f s   (all: %s; inside the process %.3f s)\n' "$b" "${b_times[*]}" "$i"
f=$(printf '%s\n' "${f_times[@]}" | median)
printf 'floor: temp+rename per file, no ELF work: %.3f s\n' "$f"
printf 'ratio: %.1fx faster (the floor alone would be %.1fx)\n' "$(echo "$p / $b" | bc -l)" "$(echo "$p / $f" | bc -l)"
