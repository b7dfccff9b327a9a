#!/usr/bin/env bash
# Repair benchmark: N real `floe node` processes on 127.0.0.1 (release build), B blobs of SIZE bytes.
#   1. kill -9 a third of the nodes and start as many fresh ones; wait until every lost sliver is rebuilt;
#      report repair traffic per repaired blob (bytes fetched ÷ blob bytes), duplicate rebuilds and time taken;
#   2. SIGTERM one node; report the bytes it handed off against the sliver bytes it held, and decodes done.
# Prints a markdown table; stops every node.
#
#   scripts/bench-repair.sh [NODES] [BLOBS] [SIZE]      # default 12 nodes, 20 blobs, 4194304 bytes
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/stop-nodes.sh
source scripts/stop-nodes.sh
nodes=${1:-12}
blobs=${2:-20}
size=${3:-4194304}
cargo build --release --quiet -p floe-node
work=$(mktemp -d)
cleanup() { stop_nodes_under "$work"; rm -rf "$work"; }
trap cleanup EXIT
python3 - "$work" "$nodes" "$blobs" "$size" <<'PY'
import json, os, signal, subprocess, sys, time, urllib.request
work, nodes, blobs, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
flags = ["--repair-grace", "3s", "--repair-interval", "1s", "--challenge-interval", "60s", "--no-upnp", "--cache-size", "0"]
procs = {}
def start(i, bootstrap=None):
    d = f"{work}/node-{i}"
    os.makedirs(d, exist_ok=True)
    args = ["target/release/floe", "node", "--listen", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0",
            *flags, "--data-dir", d]
    if bootstrap: args += ["--bootstrap", bootstrap]
    log = open(f"{d}/node.log", "a")
    procs[i] = subprocess.Popen(args, stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "floe_node=warn,floe_node::daemon=info"})
    deadline = time.time() + 30
    while not os.path.exists(f"{d}/node.json"):
        if time.time() > deadline: sys.exit(f"node {i} did not start")
        time.sleep(0.05)
    time.sleep(0.05)
    return json.load(open(f"{d}/node.json"))
def get_json(url):
    with urllib.request.urlopen(url, timeout=60) as r: return json.load(r)
def metric(i, name):
    with urllib.request.urlopen(f"{gw[i]}/metrics", timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "): return int(line.split()[1])
    return 0
def total(name, skip=()): return sum(metric(i, name) for i in procs if procs[i].poll() is None and i not in skip)
infos = {0: start(0)}
boot = infos[0]["listen"][0]
for i in range(1, nodes): infos[i] = start(i, boot)
gw = {i: f"http://{infos[i]['http']}" for i in infos}
deadline = time.time() + 60
while any(get_json(f"{gw[i]}/v1/node/status")["knownPeers"] < nodes - 1 for i in gw):
    if time.time() > deadline: sys.exit("swarm did not form")
    time.sleep(0.2)
ids = []
for b in range(blobs):
    req = urllib.request.Request(f"{gw[b % nodes]}/v1/blobs", data=os.urandom(size), method="PUT")
    with urllib.request.urlopen(req, timeout=120) as r: obj = json.load(r)["newlyCreated"]["blobObject"]
    ids.append(obj["blobId"]); n = obj["shards"]
k = (n - 1) // 3 + 1
time.sleep(2)  # background deliveries
victims = list(range(nodes - nodes // 3, nodes))
for i in victims:
    procs[i].send_signal(signal.SIGKILL); procs[i].wait()
for j in range(len(victims)):
    i = nodes + j
    infos[i] = start(i, boot); gw[i] = f"http://{infos[i]['http']}"
t0 = time.time()
# With n = nodes every blob had one sliver on each victim.
lost = len(victims) * blobs if n == nodes else None
while True:
    rebuilt = total("floe_slivers_rebuilt_total")
    if lost is not None and rebuilt >= lost: break
    if time.time() - t0 > 600: sys.exit(f"repair did not settle: {rebuilt} of {lost} rebuilt")
    time.sleep(0.5)
settle = time.time() - t0 - 3  # minus the grace period
time.sleep(3)
rebuilt = total("floe_slivers_rebuilt_total")
fetched = total("floe_repair_bytes_fetched_total")
sent = total("floe_repair_bytes_sent_total")
dups = total("floe_duplicate_slivers_received_total")
decoded = total("floe_repair_segments_decoded_total")
# Graceful leave of node 1.
held = get_json(f"{gw[1]}/v1/node/status")["sliversStored"]
# Counters of the other nodes only: the leaver's go with it.
d0 = total("floe_repair_segments_decoded_total", skip=(1,))
procs[1].send_signal(signal.SIGTERM); procs[1].wait(timeout=120)
log = open(f"{work}/node-1/node.log").read()
time.sleep(3)
# The leaver's own counter went with it; its log says what it handed off.
handed = [l for l in log.splitlines() if "hand-off done" in l]
sliver_bytes = held * (size // k)
decoded_after = total("floe_repair_segments_decoded_total", skip=(1,)) - d0
print(f"nodes: {nodes}, n = {n}, k = {k}, blobs: {blobs} × {size} bytes, loopback, release build")
print()
print("| measurement | value | target |")
print("|---|---|---|")
print(f"| slivers lost (kill -9 of {len(victims)}) | {lost} | |")
print(f"| slivers rebuilt | {rebuilt} | = lost |")
print(f"| duplicate rebuilds (rebuilt − lost, and already-held receipts) | {rebuilt - lost}, {dups} | 0 |")
print(f"| repair bytes fetched over the network ÷ repaired blob bytes | {fetched / (blobs * size):.3f} | ≤ 1.1 |")
print(f"| … counting the leader's own sliver (k slivers read per blob) | {(fetched + blobs * (size // k)) / (blobs * size):.3f} | ≤ 1.1 |")
print(f"| rebuilt bytes delivered ÷ lost sliver bytes | {sent / (lost * (size // k)):.3f} | 1.0 |")
print(f"| time to rebuild every lost sliver after the grace period | {settle:.1f} s | |")
line = handed[-1] if handed else ""
field = lambda name: int(line.split(name + "=")[1].split()[0]) if name + "=" in line else -1
print(f"| hand-off on SIGTERM: slivers handed off / held | {field('handed_off')} / {held} (failed {field('failed')}) | all |")
print(f"| hand-off bytes ÷ sliver bytes held | {field('bytes') / sliver_bytes:.3f} | 1.0 |")
print(f"| segments decoded during the hand-off | {decoded_after} | 0 |")
print()
print("Rerun: scripts/bench-repair.sh", nodes, blobs, size)
for p in procs.values():
    if p.poll() is None: p.kill()
PY
