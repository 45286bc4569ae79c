#!/usr/bin/env bash
# Relativize the RPATHs of N shared objects: bbrun's freeze pass (one
# process, in-place rewrite, atomic write with fsync per file) against
# `patchelf --set-rpath` run once per file, on identical trees, in the
# same run. Prints both wall times and the ratio.
#
#   bash benches/rpath.sh [N]        (default 300; needs cc and patchelf)
#
# patchelf is for this comparison only; bbrun never runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-300}
command -v patchelf >/dev/null || { echo "patchelf not found (apt-get install -y patchelf)" >&2; exit 2; }

cargo build -q --release -p bbrun --example relativize
tool=${CARGO_TARGET_DIR:-target}/release/examples/relativize

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
for i in $(seq 1 "$n"); do
    d="$root/eggs/pkg$i.egg/pkg$i"
    mkdir -p "$d"
    cp "$work/m.so" "$d/_speedups.cpython-311-x86_64-linux-gnu.so"
done
cp -a "$root" "$work/patchelf-root"
sync

# patchelf: one process per file, the way a shell loop or a Python
# wrapper drives it. Each file gets the same relative value bbrun computes.
start=$(date +%s.%N)
find "$work/patchelf-root" -name '*.so' -print0 |
    while IFS= read -r -d '' f; do
        patchelf --set-rpath '$ORIGIN/../../../parts/lib:/usr/local/lib' "$f"
    done
end=$(date +%s.%N)
patchelf_s=$(echo "$end - $start" | bc -l)

# bbrun: the whole pass (walk, magic check, parse, rewrite, atomic write),
# timed inside the process, and the process as a whole.
start=$(date +%s.%N)
read -r changed inner_s < <("$tool" "$root")
end=$(date +%s.%N)
bbrun_s=$(echo "$end - $start" | bc -l)

check=$(readelf -d "$root/eggs/pkg1.egg/pkg1/_speedups.cpython-311-x86_64-linux-gnu.so" | grep -o 'path: \[.*\]')
same=$(readelf -d "$work/patchelf-root/eggs/pkg1.egg/pkg1/_speedups.cpython-311-x86_64-linux-gnu.so" | grep -o 'path: \[.*\]')
[ "$check" = "$same" ] || { echo "results differ: bbrun $check, patchelf $same" >&2; exit 1; }
[ "$changed" = "$n" ] || { echo "bbrun rewrote $changed of $n files" >&2; exit 1; }

printf 'files:                 %d\n' "$n"
printf 'patchelf (per file):   %.3f s\n' "$patchelf_s"
printf 'bbrun (process):       %.3f s  (pass itself %.3f s)\n' "$bbrun_s" "$inner_s"
printf 'ratio:                 %.1fx faster\n' "$(echo "$patchelf_s / $bbrun_s" | bc -l)"
