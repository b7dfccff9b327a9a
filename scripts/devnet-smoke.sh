#!/usr/bin/env bash
# Checks the README's "run floe" command end to end: `floe devnet` starts, a blob goes in through one gateway
# and comes out of another, Ctrl-C stops every node. FLOE_PROFILE=dev uses a debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/floe-binary.sh
work=$(mktemp -d)
# Ports below Linux's ephemeral range (32768-60999): the tests before this open many client connections, and one
# of them can hold a port in that range just when a node wants to listen on it.
"$floe" devnet --nodes 3 --base-port 24500 --data-dir "$work/data" > "$work/out" 2>&1 &
devnet=$!
on_exit() {
  status=$?
  if [ "$status" -ne 0 ]; then
    echo "devnet smoke failed ($status); devnet output and node logs follow" >&2
    cat "$work/out" >&2 || true
    tail -n 20 "$work"/data/node-*/node.log >&2 || true
  fi
  kill -INT "$devnet" 2>/dev/null || true; sleep 1
  # Nodes the devnet left behind, by the PIDs it started them with.
  for pid in ${node_pids:-}; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap on_exit EXIT
for _ in $(seq 1 100); do grep -q "Ctrl-C stops" "$work/out" 2>/dev/null && break; sleep 0.2; done
node_pids=$(pgrep -P "$devnet" || true)
cat "$work/out"
# Let the three nodes find each other.
for port in 25500 25501 25502; do
  for _ in $(seq 1 150); do
    curl -sf http://127.0.0.1:$port/v1/node/status | grep -q '"knownPeers":2' && break; sleep 0.2
  done
done
head -c 300000 /dev/urandom > "$work/blob"
id=$("$floe" put "$work/blob" --gateway http://127.0.0.1:25500)
[ -n "$id" ] || { echo "floe put printed no blob ID" >&2; exit 1; }
"$floe" get "$id" -o "$work/copy" --gateway http://127.0.0.1:25502
cmp "$work/blob" "$work/copy"
echo "devnet smoke: blob $id went in through node 0 and came out of node 2 byte-identical"
kill -INT $devnet
wait $devnet || true
for pid in $node_pids; do
  if kill -0 "$pid" 2>/dev/null; then echo "devnet left node $pid running" >&2; exit 1; fi
done
echo "devnet smoke: Ctrl-C stopped every node"
