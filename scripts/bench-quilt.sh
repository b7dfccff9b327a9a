#!/usr/bin/env bash
# Publishing a site as one quilt against file by file (issue 19's target): FILES files of 1 KiB to 2 MiB
# (log-uniform, seeded) on a NODES-node devnet (release build). Phase 1 stores every file with its own PUT
# /v1/blobs, PARALLEL at a time, through node 0; phase 2 stores them all with one PUT /v1/quilts through node 0.
# Reports wall time, store requests the holders received (floe_write_requests_total), sliver indexes and bytes
# the holders keep, for both; then reads 20 random files back by identifier through another node and compares.
# Target: the quilt's publish time at most 1/10 of the file-by-file time.
#
#   scripts/bench-quilt.sh [FILES] [NODES] [PARALLEL]     # default: 500 files, 8 nodes, 4 at a time
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
work=$(mktemp -d)
target/release/floe devnet --nodes "$nodes" --base-port 46600 --data-dir "$work/devnet" --max-body 1GiB \
  > "$work/devnet.out" 2>&1 &
devnet=$!
cleanup() {
  kill -INT "$devnet" 2>/dev/null || true; wait "$devnet" 2>/dev/null || true
  stop_nodes_under "$work"
  rm -rf "$work"
}
trap cleanup EXIT
python3 - "$work" "$files" "$nodes" "$parallel" <<'PY'
import json, math, random, sys, threading, time, urllib.request, urllib.parse
work, count, nodes, parallel = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
deadline = time.time() + 90
while True:
    try:
        infos = [json.load(open(f"{work}/devnet/node-{i}/node.json")) for i in range(nodes)]
        gw = [f"http://{i['http']}" for i in infos]
        if all(json.load(urllib.request.urlopen(f"{g}/v1/node/status"))["knownPeers"] >= nodes - 1 for g in gw):
            break
    except Exception:
        pass
    if time.time() > deadline: sys.exit("devnet did not form")
    time.sleep(0.5)

def totals():
    names = ["floe_write_requests_total", "floe_slivers_stored", "floe_bytes_stored"]
    out = dict.fromkeys(names, 0)
    for g in gw:
        for line in urllib.request.urlopen(f"{g}/metrics").read().decode().splitlines():
            name, _, value = line.partition(" ")
            if name in out: out[name] += int(float(value))
    return out

def settle():
    # Writes answer once certified; the remaining slivers go on in the background.
    last = None
    while True:
        now = totals()
        if now == last: return now
        last = now; time.sleep(1.5)

rng = random.Random(19)
sizes = [int(math.exp(rng.uniform(math.log(1 << 10), math.log(2 << 20)))) for _ in range(count)]
site = [(f"assets/file-{i:04}.bin", random.Random(i).randbytes(n)) for i, n in enumerate(sizes)]
total = sum(sizes)
print(f"{count} files, {total / 1e6:.1f} MB (1 KiB to 2 MiB, log-uniform); {nodes} nodes")

before = settle()
started = time.time()
errors = []
def one_by_one(part):
    for name, data in part:
        req = urllib.request.Request(f"{gw[0]}/v1/blobs", data=data, method="PUT")
        try: urllib.request.urlopen(req, timeout=300).read()
        except Exception as e: errors.append(f"{name}: {e}")
threads = [threading.Thread(target=one_by_one, args=(site[t::parallel],)) for t in range(parallel)]
[t.start() for t in threads]; [t.join() for t in threads]
single_s = time.time() - started
if errors: sys.exit("puts failed: " + "; ".join(errors[:3]))
after_single = settle()

boundary = "floe-bench-quilt-boundary"
body = bytearray()
for name, data in site:
    body += f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n\r\n".encode()
    body += data + b"\r\n"
body += f"--{boundary}--\r\n".encode()
started = time.time()
req = urllib.request.Request(f"{gw[0]}/v1/quilts", data=bytes(body), method="PUT",
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
answer = json.load(urllib.request.urlopen(req, timeout=600))
quilt_s = time.time() - started
after_quilt = settle()
quilt = answer["blobStoreResult"]["newlyCreated"]["blobObject"]["blobId"]

def delta(a, b, name): return b[name] - a[name]
rows = [("file by file", single_s, before, after_single), ("one quilt", quilt_s, after_single, after_quilt)]
print()
print("| publish | wall time | store requests received | sliver indexes kept | bytes kept | overhead vs the files |")
print("|---|---|---|---|---|---|")
for label, secs, a, b in rows:
    kept = delta(a, b, "floe_bytes_stored")
    print(f"| {label} | {secs:.1f} s | {delta(a, b, 'floe_write_requests_total')} | {delta(a, b, 'floe_slivers_stored')} "
          f"| {kept / 1e6:.1f} MB | {kept / total:.2f}x |")
print(f"\nquilt publish time / file-by-file time: {quilt_s / single_s:.3f} (target at most 0.1)")
bad = 0
for name, data in rng.sample(site, 20):
    path = urllib.parse.quote(name, safe="")
    got = urllib.request.urlopen(f"{gw[-1]}/v1/blobs/by-quilt-id/{quilt}/{path}", timeout=120).read()
    bad += got != data
print(f"20 files read back from the quilt through node {nodes - 1}: {20 - bad} byte-identical")
sys.exit(1 if bad else 0)
PY
