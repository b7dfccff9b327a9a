#!/usr/bin/env bash
# Peak RSS and throughput of `floe slivers encode` and `floe slivers decode` on a large file.
#
#   scripts/bench-cli-rss.sh [SIZE_GIB] [SHARDS]      # default: 10 GiB, 12 slivers
#
# Needs about SIZE × (2 + 3) GiB of free disk under $TMPDIR (input, 3× slivers, output). Decoding uses only
# the last k slivers (all parity), the worst case. Prints a table row per step; cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
size_gib=${1:-10}
shards=${2:-12}
cargo build --release --quiet -p floe-node
floe=$PWD/target/release/floe
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# 256 MiB of random bytes repeated: codec speed does not depend on the data, and this is quick to make.
head -c $((256 << 20)) /dev/urandom > "$work/chunk"
for _ in $(seq 1 $((size_gib * 4))); do cat "$work/chunk"; done > "$work/blob"
rm "$work/chunk"
bytes=$(stat -c %s "$work/blob")
measure() { # name, command...
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > "$work/out" 2> "$work/err" || { cat "$work/err" >&2; exit 1; }
  read -r secs kib < "$work/time"
  python3 -c "import sys; s,k,b=float(sys.argv[1]),int(sys.argv[2]),int(sys.argv[3]); print(f'| {sys.argv[4]} | {b/2**30:.1f} GiB | {s:.1f} s | {b/s/1e6:,.0f} MB/s | {k/1024:,.0f} MiB |')" "$secs" "$kib" "$bytes" "$name"
}
echo "| step | blob | wall time | throughput | peak RSS |"
echo "|---|---|---|---|---|"
measure "blob-id (n=$shards)" "$floe" blob-id "$work/blob" --shards "$shards"
measure "slivers encode (n=$shards)" "$floe" slivers encode "$work/blob" --out "$work/slivers" --shards "$shards"
id=$(cat "$work/out")
k=$(( (shards - 1) / 3 + 1 ))
for i in $(seq 0 $((shards - k - 1))); do rm "$work/slivers/$(printf 'sliver-%04d.floe' "$i")"; done
measure "slivers decode, last $k of $shards (all parity)" "$floe" slivers decode "$work/slivers" --blob-id="$id" --out "$work/rebuilt"
cmp "$work/blob" "$work/rebuilt"
echo "rebuilt file is byte-identical" >&2
