#!/usr/bin/env bash
# Publishing a site as one quilt against file by file (issue 19's target): FILES files of 1 KiB to 2 MiB
# (log-uniform, seeded) on a NODES-node devnet (release build). Phase 1 stores every file with its own PUT
# /v1/blobs, PARALLEL at a time, through node 0; phase 2 stores them all with one PUT /v1/quilts through node 0.
# Reports wall time, store requests the holders received (floe_write_requests_total), sliver indexes and bytes
# the holders keep, for both; then reads 20 random files back by identifier through another node and compares.
# Target: the quilt's publish time at most 1/10 of the file-by-file time.
#
#   scripts/bench-quilt.sh [FILES] [NODES] [PARALLEL]     # default: 500 files, 8 nodes, 4 at a time
#   FLOE_RTT_MS=50 scripts/bench-quilt.sh …                # each node in a network namespace of its own, 50 ms
#                                                          # apart (scripts/testbed/rtt-net.sh; needs root)
#
# With FLOE_RTT_MS the publisher runs beside node 0 (no delay to its gateway), as a publisher would use its own
# node or a nearby gateway; every path between nodes has the round trip given.
#
# Stops everything it started, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/stop-nodes.sh
source scripts/stop-nodes.sh
files=${1:-500}
nodes=${2:-8}
parallel=${3:-4}
cargo build --release --quiet -p floe-node
floe=$PWD/target/release/floe
work=$(mktemp -d)
pids=()
devnet=
cleanup() {
  [ -n "$devnet" ] && { kill -INT "$devnet" 2>/dev/null || true; wait "$devnet" 2>/dev/null || true; }
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  stop_nodes_under "$work"
  [ -n "${FLOE_RTT_MS:-}" ] && rtt_net_down
  rm -rf "$work"
}
trap cleanup EXIT
if [ -z "${FLOE_RTT_MS:-}" ]; then
  "$floe" devnet --nodes "$nodes" --base-port 46600 --data-dir "$work/devnet" --max-body 1GiB \
    > "$work/devnet.out" 2>&1 &
  devnet=$!
  for _ in $(seq 1 300); do [ -s "$work/devnet/node-$((nodes - 1))/node.json" ] && break; sleep 0.2; done
  for i in $(seq 0 $((nodes - 1))); do
    python3 -c 'import json,sys; print("http://" + json.load(open(sys.argv[1]))["http"])' \
      "$work/devnet/node-$i/node.json"
  done > "$work/gateways"
  python3 scripts/bench-quilt.py "$work/gateways" "$files" "$parallel"
else
  # shellcheck source=scripts/testbed/rtt-net.sh
  source scripts/testbed/rtt-net.sh
  rtt_net_up "$nodes" "$FLOE_RTT_MS"
  echo "each node in its own namespace; ${FLOE_RTT_MS} ms round trip between any two"
  for i in $(seq 0 $((nodes - 1))); do
    dir="$work/node-$i"; mkdir -p "$dir"
    extra=(); [ "$i" -gt 0 ] && extra=(--bootstrap "/ip4/10.78.0.2/tcp/4001")
    ip netns exec "$(rtt_net_ns "$i")" "$floe" node --listen /ip4/10.78.$i.2/tcp/4001 --http 10.78.$i.2:8080 \
      --data-dir "$dir" --no-upnp --max-body 1GiB --http-exempt 10.78.0.0/16 "${extra[@]}" \
      > "$dir/node.log" 2>&1 &
    pids+=($!)
    echo "http://10.78.$i.2:8080" >> "$work/gateways"
    [ "$i" -eq 0 ] && sleep 1
  done
  ip netns exec "$(rtt_net_ns 0)" python3 scripts/bench-quilt.py "$work/gateways" "$files" "$parallel"
fi
