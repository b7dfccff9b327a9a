#!/usr/bin/env bash
# Blob lifetimes at scale, as issue 18 sets the target: BLOBS blobs with random lifetimes (1 to 4 epochs) on a
# 12-node devnet with epochs of EPOCH seconds. Checks that every blob reads back byte-identical while at least a
# whole epoch of its life is left, and answers 404 "expired" once its end epoch is more than one epoch past
# (the slack absorbs a read that straddles an epoch boundary), and measures the data directories against the
# bytes the holders are meant to hold (encoded bytes of blobs within their end epoch plus the grace epoch).
#
#   scripts/lifetimes-test.sh [BLOBS] [EPOCH_SECONDS]     # default: 1000 blobs, 10 s epochs
#
# FLOE_PROFILE=dev uses a debug build. Stops every node it started, by PID; FLOE_TEST_KEEP=1 keeps the data.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/stop-nodes.sh
source scripts/stop-nodes.sh
. scripts/floe-binary.sh
blobs=${1:-1000}
epoch=${2:-10}
work=$(mktemp -d)
"$floe" devnet --nodes 12 --base-port 26000 --data-dir "$work/devnet" --epoch-duration "${epoch}s" \
  > "$work/devnet.out" 2>&1 &
devnet=$!
cleanup() {
  kill -INT "$devnet" 2>/dev/null || true; wait "$devnet" 2>/dev/null || true
  stop_nodes_under "$work"
  if [ "${FLOE_TEST_KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
python3 - "$work" "$blobs" "$epoch" <<'PY'
import http.client, json, os, random, subprocess, sys, threading, time, urllib.request, urllib.error
work, count, epoch_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
deadline = time.time() + 90
while True:
    try:
        infos = [json.load(open(f"{work}/devnet/node-{i}/node.json")) for i in range(12)]
        gw = [f"http://{i['http']}" for i in infos]
        if all(json.load(urllib.request.urlopen(f"{g}/v1/node/status"))["knownPeers"] >= 11 for g in gw):
            break
    except Exception:
        pass
    if time.time() > deadline: sys.exit("devnet did not form")
    time.sleep(0.5)

def status(g):
    return json.load(urllib.request.urlopen(f"{g}/v1/node/status", timeout=30))

def disk_bytes():
    total = 0
    for i in range(12):
        for root, _, files in os.walk(f"{work}/devnet/node-{i}/store"):
            total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total

rng = random.Random(18)
plan = [(rng.randrange(16 << 10, 256 << 10), rng.randint(1, 4)) for _ in range(count)]
blobs, lock, errors = [], threading.Lock(), []
def writer(part):
    for i in part:
        size, epochs = plan[i]
        data = random.Random(i).randbytes(size)
        g = gw[i % 12]
        try:
            req = urllib.request.Request(f"{g}/v1/blobs?epochs={epochs}", data=data, method="PUT")
            answer = json.load(urllib.request.urlopen(req, timeout=120))
            obj = answer["newlyCreated"]["blobObject"]
            with lock:
                blobs.append((obj["blobId"], obj["storage"]["endEpoch"], obj["storage"]["storageSize"], i))
        except Exception as e:
            with lock: errors.append(f"write {i}: {e}")
started = time.time()
threads = [threading.Thread(target=writer, args=(range(t, count, 8),)) for t in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
if errors: sys.exit("writes failed: " + "; ".join(errors[:5]))
print(f"wrote {len(blobs)} blobs ({sum(plan[b[3]][0] for b in blobs) / 1e6:.1f} MB) in {time.time() - started:.0f} s "
      f"with lifetimes of 1 to 4 epochs of {epoch_s} s; 12 nodes")

def read(g, blob_id):
    try:
        with urllib.request.urlopen(f"{g}/v1/blobs/{blob_id}", timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()

last_end = max(b[1] for b in blobs)
checked_live = checked_gone = 0
violations = []
samples = []
peak_disk = 0
while True:
    now = status(gw[0])["epoch"]
    # Meant to be held: within the end epoch plus the grace epoch.
    held = sum(b[2] for b in blobs if b[1] + 1 >= now)
    disk = disk_bytes()
    peak_disk = max(peak_disk, disk)
    samples.append((now, held, disk))
    for blob_id, end, _, i in rng.sample(blobs, min(40, len(blobs))):
        g = rng.choice(gw)
        before = status(g)["epoch"]
        code, body = read(g, blob_id)
        if end > before:
            checked_live += 1
            if code != 200 or body != random.Random(i).randbytes(plan[i][0]):
                violations.append(f"{blob_id} (end {end}) unreadable at epoch {before}: {code} {body[:120]!r}")
        elif end + 1 < before:
            checked_gone += 1
            if code != 404 or b"expired" not in body:
                violations.append(f"{blob_id} (end {end}) still answered {code} at epoch {before}")
    if now > last_end + 2:
        break
    time.sleep(epoch_s / 4)
# Let the last scans drop what expired, and compaction run.
time.sleep(epoch_s)
dropped = sum(int(l.split()[1]) for g in gw for l in urllib.request.urlopen(f"{g}/metrics").read().decode().splitlines()
              if l.startswith("floe_expired_slivers_dropped_total "))
final_disk = disk_bytes()
print(f"reads checked: {checked_live} of blobs with an epoch or more to live (all must succeed), "
      f"{checked_gone} of blobs past their end and grace epochs (all must be 404 expired); violations: {len(violations)}")
print(f"slivers dropped by holders: {dropped} (n = 12 per blob: {12 * len(blobs)} at most)")
print()
print("| epoch | bytes meant to be held | data dirs (store/) | ratio |")
print("|---|---|---|---|")
for now, held, disk in samples[:: max(1, len(samples) // 12)]:
    ratio = f"{disk / held:.2f}" if held else "-"
    print(f"| {now} | {held / 1e6:.1f} MB | {disk / 1e6:.1f} MB | {ratio} |")
print(f"| end | 0 | {final_disk / 1e6:.1f} MB | - |")
print(f"\ndata dirs: peak {peak_disk / 1e6:.1f} MB, {final_disk / 1e6:.1f} MB once every blob expired")
for v in violations[:10]: print("VIOLATION", v)
sys.exit(1 if violations else 0)
PY
