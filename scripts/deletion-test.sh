#!/usr/bin/env bash
# Deletion at scale, as issue 18 sets the target: BLOBS deletable blobs (64 KiB to 1 MiB) on 12 `floe node`s
# scanning every SCAN seconds. One node is killed (kill -9), every blob is deleted through the others, and the
# node comes back after two scan intervals (at least 10 s). Measures how long after the deletions every live holder had dropped its slivers, and how long
# after its restart the returning one had (the target: within two scan intervals), checks that every blob then
# answers 404 "deleted" from every node, and reports the bytes reclaimed (the holders' count, and the data
# directories before and after).
#
#   scripts/deletion-test.sh [BLOBS] [SCAN_SECONDS]     # default: 100 blobs, 5 s scans
#
# FLOE_PROFILE=dev uses a debug build. Stops every node it started, by PID; FLOE_TEST_KEEP=1 keeps the data.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/stop-nodes.sh
source scripts/stop-nodes.sh
. scripts/floe-binary.sh
blobs=${1:-100}
scan=${2:-5}
work=$(mktemp -d)
cleanup() {
  stop_nodes_under "$work"
  if [ "${FLOE_TEST_KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
python3 - "$work" "$blobs" "$scan" "$floe" <<'PY'
import json, os, random, subprocess, sys, threading, time, urllib.request, urllib.error
work, count, scan, floe = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
NODES = 12

def start(i, bootstrap):
    d = f"{work}/node-{i}"
    os.makedirs(d, exist_ok=True)
    if os.path.exists(f"{d}/node.json"):
        os.remove(f"{d}/node.json")
    args = [floe, "node", "--data-dir", d, "--listen", f"/ip4/127.0.0.1/tcp/{27000 + i}",
            "--http", f"127.0.0.1:{28000 + i}", "--no-upnp", "--handoff-timeout", "0s",
            "--repair-interval", f"{scan:g}s"]
    if bootstrap:
        args += ["--bootstrap", bootstrap]
    log = open(f"{d}/node.log", "a")
    proc = subprocess.Popen(args, stdout=log, stderr=log)
    for _ in range(300):
        if os.path.exists(f"{d}/node.json") and os.path.getsize(f"{d}/node.json") > 0:
            return proc, json.load(open(f"{d}/node.json"))
        time.sleep(0.1)
    sys.exit(f"node {i} did not start")

procs, infos = [], []
for i in range(NODES):
    proc, info = start(i, infos[0]["listen"][0] if infos else None)
    procs.append(proc); infos.append(info)
gw = [f"http://127.0.0.1:{28000 + i}" for i in range(NODES)]

def status(g):
    return json.load(urllib.request.urlopen(f"{g}/v1/node/status", timeout=30))

def wait_formed(nodes):
    deadline = time.time() + 90
    while not all(status(gw[i])["knownPeers"] >= NODES - 1 for i in nodes):
        if time.time() > deadline: sys.exit("swarm did not form")
        time.sleep(0.5)
wait_formed(range(NODES))

def metric(g, name):
    for line in urllib.request.urlopen(f"{g}/metrics", timeout=30).read().decode().splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return 0

def disk_bytes(i):
    total = 0
    for root, _, files in os.walk(f"{work}/node-{i}/store"):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total

rng = random.Random(18)
sizes = [rng.randrange(64 << 10, 1 << 20) for _ in range(count)]
blobs, lock, errors = [], threading.Lock(), []
def writer(part):
    for i in part:
        data = random.Random(i).randbytes(sizes[i])
        try:
            req = urllib.request.Request(f"{gw[i % NODES]}/v1/blobs", data=data, method="PUT")
            answer = json.load(urllib.request.urlopen(req, timeout=120))["newlyCreated"]
            with lock:
                blobs.append((answer["blobObject"]["blobId"], answer["deletionToken"], i))
        except Exception as e:
            with lock: errors.append(f"write {i}: {e}")
threads = [threading.Thread(target=writer, args=(range(t, count, 8),)) for t in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
if errors: sys.exit("writes failed: " + "; ".join(errors[:5]))
time.sleep(2 * scan)  # deliveries finish
before = [disk_bytes(i) for i in range(NODES)]
print(f"wrote {len(blobs)} deletable blobs ({sum(sizes) / 1e6:.1f} MB); 12 nodes, scans every {scan:g} s; "
      f"data dirs {sum(before) / 1e6:.1f} MB")

down = NODES - 1
procs[down].kill(); procs[down].wait()
started = time.time()
failures = []
def deleter(part):
    for j in part:
        blob_id, token, _ = blobs[j]
        req = urllib.request.Request(f"{gw[j % down]}/v1/blobs/{blob_id}", method="DELETE",
                                     headers={"X-Floe-Deletion-Token": token})
        try:
            answer = json.load(urllib.request.urlopen(req, timeout=60))
            if not answer["deleted"]:
                with lock: failures.append(f"{blob_id}: {answer}")
        except urllib.error.HTTPError as e:
            with lock: failures.append(f"{blob_id}: {e.code} {e.read()[:200]!r}")
threads = [threading.Thread(target=deleter, args=(range(t, len(blobs), 8),)) for t in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
deleted_in = time.time() - started
if failures: sys.exit("deletions failed: " + "; ".join(failures[:5]))

def dropped(nodes):
    return sum(metric(gw[i], "floe_deleted_slivers_dropped_total") for i in nodes)
live = range(down)
# Every blob has one sliver index per node (n = 12 on 12 nodes), and a holder keeps every index it holds.
held_live = sum(len([1 for _ in blobs]) for _ in live)
deadline = time.time() + 20 * scan
while dropped(live) < held_live:
    if time.time() > deadline: sys.exit(f"live holders dropped {dropped(live)} of {held_live} slivers")
    time.sleep(0.2)
live_done = time.time() - started

# Down long enough that gossipsub's replay of recent messages (a few heartbeats) cannot bring it the deletions:
# the returning holder must hear of them from the tombstones.
time.sleep(max(2 * scan, 10))
passed_before = sum(metric(gw[i], "floe_deletions_passed_on_total") for i in live)
procs[down], _ = start(down, infos[0]["listen"][0])
back = time.time()
wait_formed([down])
deadline = time.time() + 20 * scan
while metric(gw[down], "floe_deleted_slivers_dropped_total") < len(blobs):
    if time.time() > deadline:
        sys.exit(f"the returning holder dropped {metric(gw[down], 'floe_deleted_slivers_dropped_total')} of {len(blobs)}")
    time.sleep(0.2)
returning_done = time.time() - back

bad = []
for blob_id, _, _ in blobs:
    for g in rng.sample(gw, 3) + [gw[down]]:
        try:
            urllib.request.urlopen(f"{g}/v1/blobs/{blob_id}", timeout=60)
            bad.append(f"{blob_id} still served by {g}")
        except urllib.error.HTTPError as e:
            body = e.read()
            if e.code != 404 or b"deleted" not in body:
                bad.append(f"{blob_id}: {e.code} {body[:120]!r} from {g}")
reclaimed = sum(metric(g, "floe_deleted_bytes_reclaimed_total") for g in gw)
passed_on = sum(metric(g, "floe_deletions_passed_on_total") for g in gw) - passed_before
time.sleep(2 * scan)
after = [disk_bytes(i) for i in range(NODES)]
print(f"deleted {len(blobs)} blobs through 11 nodes in {deleted_in:.1f} s (one holder down)")
print(f"every live holder had dropped its slivers {live_done:.1f} s after the first deletion "
      f"({live_done / scan:.2f} scan intervals)")
print(f"the returning holder had dropped all {len(blobs)} of its slivers {returning_done:.1f} s after it restarted "
      f"({returning_done / scan:.2f} scan intervals; tombstone holders passed {passed_on} deletions on meanwhile)")
print(f"sliver bytes reclaimed (floe_deleted_bytes_reclaimed_total): {reclaimed / 1e6:.1f} MB")
print(f"data dirs (store/): {sum(before) / 1e6:.1f} MB before, {sum(after) / 1e6:.1f} MB after "
      f"({(sum(before) - sum(after)) / 1e6:.1f} MB back on disk)")
print(f"reads after deletion: {len(blobs) * 4} checked, {len(bad)} not 404 deleted")
for b in bad[:10]: print("VIOLATION", b)
sys.exit(1 if bad or returning_done > 2 * scan + 5 else 0)
PY
