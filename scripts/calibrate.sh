#!/usr/bin/env bash
# Calibration: the same small scenario in floe-simnet and on a real loopback swarm of `floe node` processes.
# 20 nodes, 20 blobs of SIZE bytes (default 1 MiB), 8 nodes killed for good, repair after a 3 s grace period.
# Compares read latency (p50 before the kill) and repair traffic (bytes fetched plus bytes delivered) and prints
# a markdown table. The simulator charges CPU by the [cpu] table below (docs/simnet.md, "CPU").
#
#   scripts/calibrate.sh [SEED] [SIZE]
set -euo pipefail
cd "$(dirname "$0")/.."
seed=${1:-1}
size=${2:-1048576}
[[ $size =~ ^[0-9]+$ && $size -gt 0 ]] || { echo "calibrate.sh: SIZE must be a positive number of bytes" >&2; exit 2; }
cargo build --release --quiet -p floe-node -p floe-simnet
work=$(mktemp -d)
# Every node's PID is written to $work/pids as it starts, so cleanup stops exactly those processes.
cleanup() {
  if [[ -f $work/pids ]]; then
    while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done < "$work/pids"
  fi
  rm -rf "$work"
}
trap cleanup EXIT
cat > "$work/calibrate.toml" <<TOML
name = "calibrate"
description = "20 nodes on one loopback-like region, 20 blobs of $size bytes; 8 nodes crash for good; repair after 3 s."
duration_ms = 300_000
sample_interval_ms = 10_000

[nodes]
count = 20
regions = { loopback = 1.0 }
up_mbps = 10000.0
down_mbps = 10000.0

[network]
regions = ["loopback"]
rtt_ms = [[0.1]]
jitter_ms = 0.0

[kademlia]
hops = 1
hop_latency_ms = 1
staleness_ms = 3_000

[gossip]
hop_latency_ms = 1
heartbeat_ms = 1_000

[workload]
blobs = 20
size_min_bytes = $size
size_max_bytes = $size
write_phase_ms = 20_000
read_rate_per_s = 2.0

[repair]
grace_ms = 3_000

# This machine's CPU as the swarm below uses it (docs/simnet.md, "CPU"): sliver throughputs measured by
# floe-simnet cpu on one core (1 MiB, n = 20), and the transport and fixed costs of 20 release nodes sharing two
# cores over loopback with noise, fitted once to first reads of 64 KiB and 1 MiB blobs (2026-12-03, after reads
# began reusing decoders). Each can be overridden
# from the environment (CALIBRATE_VERIFY, CALIBRATE_CHECK, CALIBRATE_TRANSFER, CALIBRATE_MESSAGE_US,
# CALIBRATE_READ_US) to try others.
[cpu]
verify_mb_per_s = ${CALIBRATE_VERIFY:-5020}
check_mb_per_s = ${CALIBRATE_CHECK:-1140}
transfer_mb_per_s = ${CALIBRATE_TRANSFER:-210}
message_us = ${CALIBRATE_MESSAGE_US:-0}
read_us = ${CALIBRATE_READ_US:-0}

[[crash]]
at_ms = 120_000
nodes = [12, 13, 14, 15, 16, 17, 18, 19]
wipe = true
TOML
target/release/floe-simnet run "$work/calibrate.toml" --seed "$seed" --out "$work/sim" --quiet > /dev/null
python3 - "$work" "$size" <<'PY'
import json, os, signal, statistics, subprocess, sys, time, urllib.request
work = sys.argv[1]
nodes, blobs, size, killed = 20, 20, int(sys.argv[2]), list(range(12, 20))
flags = ["--repair-grace", "3s", "--repair-interval", "1s", "--challenge-interval", "60s", "--no-upnp", "--cache-size", "0"]
procs, gw = {}, {}
def start(i, bootstrap=None):
    d = f"{work}/node-{i}"; os.makedirs(d, exist_ok=True)
    args = ["target/release/floe", "node", "--listen", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0", *flags,
            "--data-dir", d] + (["--bootstrap", bootstrap] if bootstrap else [])
    log = open(f"{d}/node.log", "a")
    procs[i] = subprocess.Popen(args, stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"})
    with open(f"{work}/pids", "a") as pids: pids.write(f"{procs[i].pid}\n")
    deadline = time.time() + 30
    while not os.path.exists(f"{d}/node.json"):
        if time.time() > deadline: sys.exit(f"node {i} did not start")
        time.sleep(0.05)
    time.sleep(0.05)
    info = json.load(open(f"{d}/node.json")); gw[i] = f"http://{info['http']}"
    return info
def get_json(url):
    with urllib.request.urlopen(url, timeout=60) as r: return json.load(r)
def metric(i, name):
    with urllib.request.urlopen(f"{gw[i]}/metrics", timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "): return int(line.split()[1])
    return 0
def total(name): return sum(metric(i, name) for i in procs if procs[i].poll() is None)
boot = start(0)["listen"][0]
for i in range(1, nodes): start(i, boot)
deadline = time.time() + 60
while any(get_json(f"{gw[i]}/v1/node/status")["knownPeers"] < nodes - 1 for i in gw):
    if time.time() > deadline: sys.exit("swarm did not form")
    time.sleep(0.2)
ids = []
for b in range(blobs):
    req = urllib.request.Request(f"{gw[b % 12]}/v1/blobs", data=os.urandom(size), method="PUT")
    with urllib.request.urlopen(req, timeout=120) as r: ids.append(json.load(r)["newlyCreated"]["blobObject"]["blobId"])
time.sleep(2)
def reads(round):
    # Each round reads every blob through a gateway that has not read it yet, so every measured read is a
    # first read (with the consistency check), as most of the simulator's are.
    ms = []
    for b, blob_id in enumerate(ids):
        t = time.perf_counter()
        with urllib.request.urlopen(f"{gw[(b * 7 + round) % 12]}/v1/blobs/{blob_id}", timeout=60) as r: assert len(r.read()) == size
        ms.append((time.perf_counter() - t) * 1000)
    return ms
reads(0)
healthy = reads(1) + reads(2)
for i in killed:
    procs[i].send_signal(signal.SIGKILL); procs[i].wait()
t0 = time.time()
while total("floe_slivers_rebuilt_total") < len(killed) * blobs:
    if time.time() - t0 > 300: sys.exit("repair did not settle")
    time.sleep(0.5)
time.sleep(2)
real_bytes = total("floe_repair_bytes_fetched_total") + total("floe_repair_bytes_sent_total")
real_p50 = statistics.median(healthy)
sim = json.load(open(f"{work}/sim/summary.json"))
print(f"20 nodes, 20 blobs × {size} bytes, 8 killed for good, 3 s grace; simulator seed {sim['seed']}, real swarm on loopback (release)")
print()
print("| measurement | floe-simnet | real swarm | sim ÷ real |")
print("|---|---|---|---|")
print(f"| read latency p50, healthy swarm | {sim['read_p50_ms']} ms | {real_p50:.1f} ms | {sim['read_p50_ms'] / real_p50:.2f} |")
print(f"| slivers rebuilt | {sim['slivers_rebuilt']} | {total('floe_slivers_rebuilt_total')} | |")
print(f"| repair bytes (fetched + delivered) | {sim['repair_bytes']} | {real_bytes} | {sim['repair_bytes'] / real_bytes:.3f} |")
for p in procs.values():
    if p.poll() is None: p.kill()
PY
