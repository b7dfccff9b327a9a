#!/usr/bin/env bash
# A large put and get through the gateway, with every node's peak RSS.
#
#   scripts/bench-large.sh [SIZE_GIB] [NODES]     # default: 10 GiB, 4 nodes
#
# Starts a devnet (release build, hot-blob cache off) whose nodes accept bodies of SIZE_GIB + 1 GiB, streams
# SIZE_GIB of random bytes into node 0's gateway with curl (chunked upload, no file: the bytes are hashed on the
# way), reads the blob back through node 1 into sha256sum, and compares. Peak RSS is each node process's VmHWM
# (the kernel's high-water mark), read after the put and after the get; the baseline is read before the put.
# Needs about SIZE_GIB × (1 + n/k) GiB of free disk under $TMPDIR: the writer's spool plus the stored slivers
# (3 × SIZE_GIB at 4 nodes). Stops everything it started and removes its data.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/stop-nodes.sh
source scripts/stop-nodes.sh
size_gib=${1:-10}
nodes=${2:-4}
bytes=$((size_gib << 30))
cargo build --release --quiet -p floe-node
work=$(mktemp -d)
free_kib=$(df -k --output=avail "$work" | tail -1)
need_kib=$(((size_gib * 3 + 2) << 20))
if ((free_kib < need_kib)); then
  echo "bench-large: $((free_kib >> 20)) GiB free under $work, about $((need_kib >> 20)) GiB needed" >&2
  rm -rf "$work"
  exit 1
fi
target/release/floe devnet --nodes "$nodes" --base-port 45600 --data-dir "$work/devnet" --cache-size 0 \
  --max-body "$((size_gib + 1))GiB" > "$work/devnet.out" 2>&1 &
devnet=$!
cleanup() {
  local status=$?
  kill -INT "$devnet" 2>/dev/null || true; wait "$devnet" 2>/dev/null || true
  stop_nodes_under "$work"
  if ((status != 0)); then  # keep the nodes' logs for a post-mortem
    mkdir -p "${TMPDIR:-/tmp}/bench-large-logs"
    for log in "$work"/devnet/node-*/node.log; do
      [ -f "$log" ] && cp "$log" "${TMPDIR:-/tmp}/bench-large-logs/$(basename "$(dirname "$log")").log"
    done
    echo "bench-large: node logs kept in ${TMPDIR:-/tmp}/bench-large-logs" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT
python3 - "$work" "$nodes" <<'PY'
import json, sys, time, urllib.request
work, nodes = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 60
while True:
    try:
        infos = [json.load(open(f"{work}/devnet/node-{i}/node.json")) for i in range(nodes)]
        gw = [f"http://{i['http']}" for i in infos]
        if all(json.load(urllib.request.urlopen(f"{g}/v1/node/status"))["knownPeers"] >= nodes - 1 for g in gw):
            break
    except Exception:
        pass
    if time.time() > deadline: sys.exit("devnet did not form")
    time.sleep(0.3)
open(f"{work}/gateways", "w").write("\n".join(gw))
PY
mapfile -t gateways < "$work/gateways"
pids=()
for i in $(seq 0 $((nodes - 1))); do
  pids+=("$(node_pid "$work/devnet/node-$i")")
done
peaks() { # → max VmHWM over the nodes in MiB, then node 0's, then node 1's
  local max=0 all=()
  for pid in "${pids[@]}"; do
    local kib
    kib=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    all+=("$kib")
    ((kib > max)) && max=$kib
  done
  echo "$((max >> 10)) $((all[0] >> 10)) $((all[1] >> 10))"
}
read -r base_max base_w base_r < <(peaks)
start=$(date +%s.%N)
head -c "$bytes" /dev/urandom | tee >(sha256sum | cut -d' ' -f1 > "$work/put.sha") |
  curl -sS --fail-with-body -T - -H 'Content-Type: application/octet-stream' "${gateways[0]}/v1/blobs" \
  > "$work/put.json"
put_secs=$(python3 -c "import time,sys; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$start")
blob_id=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['newlyCreated']['blobObject']['blobId'])" "$work/put.json")
read -r put_max put_w put_r < <(peaks)
start=$(date +%s.%N)
curl -sS --fail "${gateways[1]}/v1/blobs/$blob_id" | sha256sum | cut -d' ' -f1 > "$work/get.sha"
get_secs=$(python3 -c "import time,sys; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$start")
read -r get_max get_w get_r < <(peaks)
sleep 1
if [ "$(cat "$work/put.sha")" != "$(cat "$work/get.sha")" ]; then
  echo "bench-large: the blob read back differs from the one written" >&2
  exit 1
fi
spooled=$(curl -sS "${gateways[0]}/metrics" | awk '/^floe_streamed_puts_total/ {print $2}')
# Repairs or failed challenges during the run would mean the load was mistaken for lost data.
total() { for g in "${gateways[@]}"; do curl -sS "$g/metrics"; done | awk -v m="$1" '$1 == m {s += $2} END {print s + 0}'; }
echo "repairs started: $(total floe_repairs_started_total), challenges failed: $(total floe_challenges_failed_total), passed: $(total floe_challenges_passed_total)"

python3 - "$bytes" "$put_secs" "$get_secs" "$nodes" <<PY
import sys
b, p, g, n = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
print(f"blob {b / 2**30:.1f} GiB on {n} nodes, read back byte-identical (sha256), streamed puts on the writer: $spooled")
print("| step | wall time | throughput | peak RSS, writer (node 0) | peak RSS, reader (node 1) | peak RSS, any node |")
print("|---|---|---|---|---|---|")
print(f"| before | | | $base_w MiB | $base_r MiB | $base_max MiB |")
print(f"| put | {p:.1f} s | {b / p / 1e6:,.0f} MB/s | $put_w MiB | $put_r MiB | $put_max MiB |")
print(f"| get | {g:.1f} s | {b / g / 1e6:,.0f} MB/s | $get_w MiB | $get_r MiB | $get_max MiB |")
PY
