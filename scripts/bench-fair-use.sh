#!/usr/bin/env bash
# Fair use at the gateway: does a client reading as fast as it can leave another client's latency alone?
#
#   scripts/bench-fair-use.sh [SECONDS] [GREEDY_CONNECTIONS]    # default: 20 s per phase, 16 connections
#
# Starts a 4-node devnet (release build, default limits: 50 requests/s, 64 MiB/s and 16 requests in flight per
# client; 127.0.0.1 exempt), stores a 1 MiB and a 16 KiB blob, warms node 1's hot cache with both, then runs
# three phases against node 1's gateway, each SECONDS long:
#   1. the victim alone: one client on 127.0.0.3 reading the 16 KiB blob 20 times a second;
#   2. the victim beside a greedy client with no limit (from 127.0.0.1, which is exempt): the reference for what a
#      greedy client does to a node without fair use;
#   3. the victim beside the same greedy client from 127.0.0.2, which the default limits hold.
# The greedy client reads the 1 MiB blob on GREEDY_CONNECTIONS connections at once and retries a 429 at once (it
# ignores Retry-After, as a hostile client would). Reports the victim's p50 and p99, and the greedy client's
# bytes per second and refusals. Target: phase 3's victim p50 within 2x of phase 1's, and the greedy client held
# to its 64 MiB/s (plus its 640 MiB burst spread over the phase). Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/stop-nodes.sh
source scripts/stop-nodes.sh
secs=${1:-20}
conns=${2:-16}
cargo build --release --quiet -p floe-node
work=$(mktemp -d)
target/release/floe devnet --nodes 4 --base-port 45600 --data-dir "$work/devnet" > "$work/devnet.out" 2>&1 &
devnet=$!
cleanup() {
  kill -INT "$devnet" 2>/dev/null || true; wait "$devnet" 2>/dev/null || true
  stop_nodes_under "$work"
  rm -rf "$work"
}
trap cleanup EXIT
python3 - "$work" "$secs" "$conns" <<'PY'
import http.client, json, os, statistics, subprocess, sys, threading, time, urllib.request
work, secs, conns = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
deadline = time.time() + 60
while True:
    try:
        infos = [json.load(open(f"{work}/devnet/node-{i}/node.json")) for i in range(4)]
        gw = [f"http://{i['http']}" for i in infos]
        if all(json.load(urllib.request.urlopen(f"{g}/v1/node/status"))["knownPeers"] >= 3 for g in gw):
            break
    except Exception:
        pass
    if time.time() > deadline: sys.exit("devnet did not form")
    time.sleep(0.3)

def store(size):
    data = os.urandom(size)
    req = urllib.request.Request(f"{gw[0]}/v1/blobs", data=data, method="PUT")
    blob_id = json.load(urllib.request.urlopen(req, timeout=60))["newlyCreated"]["blobObject"]["blobId"]
    # Read once through node 1 (from the exempt host), so node 1 serves it from its hot cache.
    assert urllib.request.urlopen(f"{gw[1]}/v1/blobs/{blob_id}", timeout=60).read() == data
    return f"/v1/blobs/{blob_id}", len(data)

big, big_len = store(1 << 20)
small, _ = store(16 << 10)
host, port = infos[1]["http"].rsplit(":", 1)
port = int(port)

# The greedy client runs in its own process so that its threads do not share an interpreter lock with the
# victim's clock.
GREEDY = r'''
import http.client, sys, threading, time
host, port, source, path, secs, conns = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]), int(sys.argv[6])
stop = time.time() + secs
counts = {"bytes": 0, "ok": 0, "refused": 0, "errors": 0}
lock = threading.Lock()
def run():
    c = None
    while time.time() < stop:
        try:
            if c is None:
                c = http.client.HTTPConnection(host, port, timeout=30, source_address=(source, 0))
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
            with lock:
                if r.status == 200:
                    counts["ok"] += 1; counts["bytes"] += len(body)
                elif r.status == 429:
                    counts["refused"] += 1
                else:
                    counts["errors"] += 1
        except Exception:
            with lock: counts["errors"] += 1
            c = None
threads = [threading.Thread(target=run) for _ in range(conns)]
[t.start() for t in threads]
[t.join() for t in threads]
print(counts["bytes"], counts["ok"], counts["refused"], counts["errors"])
'''

def victim(seconds):
    """Reads the small blob 20 times a second from 127.0.0.3; returns the latencies in ms."""
    c = http.client.HTTPConnection(host, port, timeout=30, source_address=("127.0.0.3", 0))
    times, failures = [], 0
    stop = time.time() + seconds
    while time.time() < stop:
        started = time.perf_counter()
        c.request("GET", small)
        r = c.getresponse()
        r.read()
        if r.status == 200:
            times.append((time.perf_counter() - started) * 1000)
        else:
            failures += 1
        time.sleep(max(0.0, 0.05 - (time.perf_counter() - started)))
    if failures:
        sys.exit(f"the victim was refused {failures} times")
    return times

def phase(source):
    greedy = None
    if source:
        greedy = subprocess.Popen([sys.executable, "-c", GREEDY, host, str(port), source, big, str(secs), str(conns)],
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(1)  # let it reach full speed
    times = victim(secs - 2 if source else secs)
    result = None
    if greedy:
        out, _ = greedy.communicate(timeout=secs + 60)
        b, ok, refused, errors = map(int, out.split())
        result = (b / secs / (1 << 20), ok, refused, errors)
    times.sort()
    p50 = statistics.median(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return p50, p99, len(times), result

alone = phase(None)
unlimited = phase("127.0.0.1")
limited = phase("127.0.0.2")
print(f"node 1's gateway, default limits; victim: 16 KiB hot blob, 20/s from 127.0.0.3; greedy: 1 MiB hot blob on "
      f"{conns} connections; {secs:.0f} s per phase; loopback, release build, {os.cpu_count()} cores")
print()
print("| phase | victim p50 ms | victim p99 ms | ratio p50 | greedy MiB/s | greedy 200s | greedy 429s |")
print("|---|---|---|---|---|---|---|")
for name, (p50, p99, n, greedy) in [("victim alone", alone), ("greedy, no limit (exempt)", unlimited),
                                    ("greedy, default limits", limited)]:
    g = f"{greedy[0]:.0f} | {greedy[1]} | {greedy[2]}" if greedy else "- | - | -"
    print(f"| {name} | {p50:.2f} | {p99:.2f} | {p50 / alone[0]:.2f} | {g} |")
print()
held = limited[3][0]
allowed = 64 + 640 / secs
print(f"greedy client held to {held:.0f} MiB/s; its limit is 64 MiB/s plus a 640 MiB burst, {allowed:.0f} MiB/s "
      f"over {secs:.0f} s")
ok = limited[0] <= 2 * alone[0] and held <= allowed * 1.05
print("target met" if ok else "TARGET MISSED")
PY
