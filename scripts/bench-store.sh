#!/usr/bin/env bash
# The sliver store against the issue's bounds, with the disk's own durable write speed as the reference.
#
#   scripts/bench-store.sh [SMALL_MIB] [LARGE_MIB] [ROUNDS]     # default: 512 MiB and 2048 MiB, 4 rounds
#
# For each size: fill with 256 KiB slivers from 16 writer threads (the node's store path: record + sliver per
# call, group-committed), then ROUNDS × (delete a random half, refill), printing disk ÷ live bytes, write MB/s
# and peak RSS after each step, then the reopen time. Two sizes show whether RSS and reopen time grow with the
# data. Then five kill -9 rounds: a writer is killed mid-stream and every sliver it had acknowledged must read
# back verified. Needs about 1.3 × LARGE_MIB of free disk under $TMPDIR; cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
small=${1:-512}
large=${2:-2048}
rounds=${3:-4}
cargo build --release --quiet -p floe-node --example bench_store
bench=$PWD/target/release/examples/bench_store
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for size in "$small" "$large"; do
  echo "== $size MiB live, $rounds rounds of deleting a random half and refilling"
  "$bench" turnover "$work/turnover-$size" "$size" "$rounds" 16
  rm -rf "$work/turnover-$size"
done
echo "== kill -9 while writing, five times; every acknowledged sliver must survive"
for round in 1 2 3 4 5; do
  "$bench" crash-writer "$work/crash" > "$work/acks" 2> "$work/writer.err" &
  pid=$!
  sleep $((2 + round))
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
  printf 'round %s: ' "$round"
  "$bench" crash-verify "$work/crash" "$work/acks"
done
