#!/usr/bin/env bash
# Swarm benchmark: N real `floe node` processes on 127.0.0.1 (release build), 1 MiB blobs.
# Measures put and get latency (p50, p95), requests per write and per read (from the nodes' own counters),
# and get latency again after killing two thirds of the nodes. Prints a markdown table; stops every node.
#
#   scripts/bench-swarm.sh [NODES] [BLOBS] [SETTLE_S]   # default 20 nodes, 40 blobs, 5 s of settling first
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/stop-nodes.sh
source scripts/stop-nodes.sh
nodes=${1:-20}
blobs=${2:-40}
settle=${3:-5}
cargo build --release --quiet -p floe-node
work=$(mktemp -d)
# The hot-blob cache is off: the measured reads repeat the warm-up's, and must go to the holders.
target/release/floe devnet --nodes "$nodes" --base-port 43000 --data-dir "$work" --cache-size 0 > "$work/devnet.out" 2>&1 &
devnet=$!
cleanup() { kill -INT "$devnet" 2>/dev/null || true; wait "$devnet" 2>/dev/null || true; stop_nodes_under "$work"; rm -rf "$work"; }
trap cleanup EXIT
python3 - "$work" "$nodes" "$blobs" "$settle" <<'PY'
import json, os, random, signal, statistics, sys, time, urllib.request
work, nodes, blobs, settle = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
def info(i):
    return json.load(open(f"{work}/node-{i}/node.json"))
deadline = time.time() + 60
while True:
    try:
        infos = [info(i) for i in range(nodes)]
        break
    except Exception:
        if time.time() > deadline: sys.exit("devnet did not start")
        time.sleep(0.2)
gw = [f"http://{i['http']}" for i in infos]
def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as r: return json.load(r)
# Wait until every node knows every other.
while any(get_json(f"{g}/v1/node/status")["knownPeers"] < nodes - 1 for g in gw):
    if time.time() > deadline: sys.exit("swarm did not form")
    time.sleep(0.2)
# A swarm that has just formed is still busy for a few seconds (identify, Kademlia bootstrap, the gossipsub
# mesh: 20 fresh nodes burn about twice their steady CPU): measure the steady state.
time.sleep(settle)
def metric(g, name):
    with urllib.request.urlopen(f"{g}/metrics", timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "): return int(line.split()[1])
    return 0
def total(name, alive): return sum(metric(gw[i], name) for i in alive)
def pct(xs, p): xs = sorted(xs); return xs[min(len(xs) - 1, int(p * len(xs)))]
rng = random.Random(7)
alive = list(range(nodes))
ids, put_ms = [], []
w0 = total("floe_write_requests_total", alive)
for b in range(blobs):
    data = os.urandom(1 << 20)
    req = urllib.request.Request(f"{gw[b % nodes]}/v1/blobs", data=data, method="PUT")
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r: answer = json.load(r)
    put_ms.append((time.perf_counter() - t) * 1000)
    obj = answer["newlyCreated"]["blobObject"]
    ids.append(obj["blobId"]); n = obj["shards"]
time.sleep(1)  # let background deliveries finish before counting
writes = (total("floe_write_requests_total", alive) - w0) / blobs
# A round reads blob b through node alive[(7b + offset) % len(alive)].
def read_round(alive, offset):
    r0 = total("floe_read_requests_total", alive)
    ms = []
    for b, blob_id in enumerate(ids):
        g = gw[alive[(b * 7 + offset) % len(alive)]]
        t = time.perf_counter()
        with urllib.request.urlopen(f"{g}/v1/blobs/{blob_id}", timeout=60) as r: body = r.read()
        ms.append((time.perf_counter() - t) * 1000)
        assert len(body) == 1 << 20
    return ms, (total("floe_read_requests_total", alive) - r0) / len(ids)
read_round(alive, 0)  # warm connections and RTT measurements
# Each blob through a node that has not read it yet (it re-encodes the segment to check the writer's
# encoding), then through the same node again (it remembers the check; the hot-blob cache is off).
get_ms, reads = read_round(alive, 1)
again_ms, _ = read_round(alive, 1)
k = (n - 1) // 3 + 1
kill = sorted(rng.sample(range(1, nodes), nodes - k))
for i in kill:
    os.kill(info(i)["pid"], signal.SIGKILL)
alive = [i for i in range(nodes) if i not in kill]
read_round(alive, 0)  # first round after the kill learns which peers are gone
dead_ms, dead_reads = read_round(alive, 0)  # read again through the same nodes
print(f"nodes: {nodes}, n = {n}, k = {k}, blobs: {blobs} × 1 MiB, loopback, release build")
print()
print("| measurement | p50 | p95 | target |")
print("|---|---|---|---|")
print(f"| put 1 MiB | {pct(put_ms, .5):.1f} ms | {pct(put_ms, .95):.1f} ms | p50 ≤ 50 ms |")
print(f"| get 1 MiB, all nodes up, first read through that node | {pct(get_ms, .5):.1f} ms | {pct(get_ms, .95):.1f} ms | p50 ≤ 20 ms |")
print(f"| get 1 MiB, all nodes up, read again through that node | {pct(again_ms, .5):.1f} ms | {pct(again_ms, .95):.1f} ms | p50 ≤ 20 ms |")
print(f"| get 1 MiB, {len(kill)} of {nodes} nodes killed, read again | {pct(dead_ms, .5):.1f} ms | {pct(dead_ms, .95):.1f} ms | p50 ≤ 2× healthy ({2 * pct(again_ms, .5):.1f} ms) |")
print()
print("| requests | per operation | target |")
print("|---|---|---|")
print(f"| network store requests per write (the writer stores its own sliver locally) | {writes:.2f} | ≤ 1.1 n = {1.1 * n:.1f} |")
print(f"| network read requests per read, healthy | {reads:.2f} | ≤ 1.5 k = {1.5 * k:.1f} |")
print(f"| network read requests per read, two thirds killed | {dead_reads:.2f} | – |")
PY
