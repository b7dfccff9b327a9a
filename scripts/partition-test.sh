#!/usr/bin/env bash
# Partition test with real processes: 12 `floe node`s in two network namespaces (6 in 10.77.1.0/24, 6 in
# 10.77.2.0/24) joined by a bridge in a third namespace, 20 blobs stored, the bridge cut between the two sides
# until both sides have taken the other's holders for gone and repaired (twice the grace period after they
# notice), then healed.
#
# Checks: every blob reads byte-identical from both sides before, during (each side holds at least k slivers
# of every blob: the per-network cap puts n/2 on each /24) and after the partition; after healing, every node
# ends with the same holder list per blob, no sliver beyond n is left, and every list is back within the cap
# (n/2 per /24: each side rebuilt the other's indexes during the cut) (within 180 s; the times are printed
# beside the rule's bound).
#
# Needs root (network namespaces; iproute2 is installed with apt-get if missing). Every namespace and process it
# creates is removed on exit, pass or fail; nodes are stopped by PID. Addresses exist only inside the namespaces.
#
#   scripts/partition-test.sh          # FLOE_PROFILE=dev uses a debug build; FLOE_TEST_KEEP=1 keeps logs and data;
#                                      # FLOE_TEST_LOG sets the nodes' RUST_LOG (default floe_node=info)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "partition test: needs root to create network namespaces (run .ci/run as root)" >&2
  exit 1
fi
if ! command -v ip > /dev/null || ! command -v bridge > /dev/null; then
  apt-get update -qq && apt-get install -y -qq iproute2 > /dev/null
fi
. scripts/floe-binary.sh
tag=$$
wire=floe-wire-$tag; side_a=floe-a-$tag; side_b=floe-b-$tag
work=$(mktemp -d)
pids=()
cleanup() {
  status=$?
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$status" -ne 0 ]; then
    echo "partition test failed ($status); the last lines of each node's log follow" >&2
    for log in "$work"/node-*/node.log; do echo "== $log" >&2; tail -n 15 "$log" >&2 || true; done
  fi
  for ns in "$side_a" "$side_b" "$wire"; do ip netns del "$ns" 2>/dev/null || true; done
  if [ -n "${FLOE_TEST_KEEP:-}" ]; then echo "node data and logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
if ! ip netns add "$wire" 2> "$work/netns.err"; then
  echo "partition test: cannot create network namespaces: $(cat "$work/netns.err")" >&2
  exit 1
fi
ip netns add "$side_a"; ip netns add "$side_b"
ip -n "$wire" link add br0 type bridge
ip -n "$wire" addr add 10.77.0.1/16 dev br0
ip -n "$wire" link set br0 up
ip -n "$wire" link set lo up
for side in a b; do
  ns=floe-$side-$tag
  net=$([ $side = a ] && echo 1 || echo 2)
  ip -n "$wire" link add "v-$side" type veth peer name eth0 netns "$ns"
  ip -n "$wire" link set "v-$side" master br0 up
  ip -n "$ns" link set lo up
  for host in 1 2 3 4 5 6; do ip -n "$ns" addr add "10.77.$net.$host/16" dev eth0; done
  ip -n "$ns" link set eth0 up
done

flags=(--no-upnp --cache-size 0 --repair-grace 5s --repair-interval 1s --challenge-settle 5s)
start_node() { # side host [bootstrap]
  local ns=floe-$1-$tag net; net=$([ "$1" = a ] && echo 1 || echo 2)
  local dir="$work/node-$1$2"
  mkdir -p "$dir"
  local extra=(); [ -n "${3:-}" ] && extra=(--bootstrap "$3")
  # A port of its own per node: libp2p binds its dials to 0.0.0.0 and the listen port, and six nodes of a side
  # share one primary address, so equal ports would collide.
  RUST_LOG="${FLOE_TEST_LOG:-floe_node=info}" ip netns exec "$ns" "$floe" node --listen "/ip4/10.77.$net.$2/tcp/$((4000 + $2))" \
    --http "10.77.$net.$2:8080" --data-dir "$dir" "${flags[@]}" "${extra[@]}" > "$dir/node.log" 2>&1 &
  pids+=($!)
}
wait_info() { for _ in $(seq 1 150); do [ -s "$1/node.json" ] && return 0; sleep 0.2; done; return 1; }
start_node a 1
wait_info "$work/node-a1" || { echo "node a1 did not start" >&2; exit 1; }
bootstrap=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["listen"][0])' "$work/node-a1/node.json")
for side in a b; do
  for host in 1 2 3 4 5 6; do
    [ "$side$host" = a1 ] || start_node "$side" "$host" "$bootstrap"
  done
done

# The harness runs on the bridge: it reaches both sides while the bridge stops forwarding between them.
ip netns exec "$wire" python3 - "$work" <<'PY'
import hashlib, json, random, subprocess, sys, time, urllib.error, urllib.request
work = sys.argv[1]
nodes = [(side, host) for side in "ab" for host in range(1, 7)]
def url(side, host):
    return f"http://10.77.{1 if side == 'a' else 2}.{host}:8080"
def call(method, u, body=None, timeout=60):
    req = urllib.request.Request(u, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return None, str(e).encode()
def try_status(node):
    code, body = call("GET", url(*node) + "/v1/node/status", timeout=10)
    return json.loads(body) if code == 200 else None
def status(node):
    """A node's status; a node busy with repairs may take a while to answer, but must answer within 60 s."""
    deadline = time.time() + 60
    while (answer := try_status(node)) is None:
        if time.time() > deadline:
            sys.exit(f"node {node} stopped answering /v1/node/status")
        time.sleep(1)
    return answer
def wait_until(what, seconds, check):
    deadline = time.time() + seconds
    while not check():
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.5)
wait_until("12 nodes to know each other", 90,
           lambda: all((s := try_status(n)) and s["knownPeers"] >= 11 for n in nodes))
peer_of = {n: status(n)["peerId"] for n in nodes}
peer_side = {peer: n[0] for n, peer in peer_of.items()}
rng = random.Random(16)
blobs = []
for i in range(20):
    data = rng.randbytes(rng.choice([1_000, 30_000, 300_000, 1_000_000]))
    writer = nodes[i % 12]
    code, body = call("PUT", url(*writer) + "/v1/blobs", data)
    if code != 200:
        sys.exit(f"put {i} through {writer} failed: {code} {body[:300]!r}")
    answer = json.loads(body)
    blob_id = (answer.get("newlyCreated") or {}).get("blobObject", {}).get("blobId") \
        or answer["alreadyCertified"]["blobId"]
    blobs.append((blob_id, hashlib.sha256(data).hexdigest()))
def read_all(when, readers, deadline_s):
    for blob_id, digest in blobs:
        for reader in readers:
            deadline = time.time() + deadline_s
            while True:
                code, body = call("GET", url(*reader) + f"/v1/blobs/{blob_id}")
                if code == 200 and hashlib.sha256(body).hexdigest() == digest:
                    break
                if code == 200:
                    sys.exit(f"{when}: {reader} returned different bytes for {blob_id}")
                if time.time() > deadline:
                    sys.exit(f"{when}: {reader} could not read {blob_id}: {code} {body[:200]!r}")
                time.sleep(1)
from concurrent.futures import ThreadPoolExecutor
status_pool = ThreadPoolExecutor(max_workers=24)
def lists():
    """Per blob: the distinct (epoch, holders) the twelve nodes report, slivers per side in node a1's list, and,
    against a1's list, the indexes whose listed holder lacks them (holes) and the whole indexes nodes hold that
    the list gives to another peer (extra)."""
    # 240 status calls, made 24 at a time: one after another they took about 25 s on a busy 2-core machine,
    # too coarse for timing a reunion bounded at 7 s.
    def fetch(pair):
        blob_id, node = pair
        code, body = call("GET", url(*node) + f"/v1/blobs/{blob_id}/status", timeout=20)
        return json.loads(body) if code == 200 else None
    pairs = [(blob_id, node) for blob_id, _ in blobs for node in nodes]
    statuses = dict(zip(pairs, status_pool.map(fetch, pairs)))
    out = []
    for blob_id, _ in blobs:
        seen = set()
        per_side = {}
        held = {}
        listed = ()
        for node in nodes:
            st = statuses[(blob_id, node)]
            if st is None:
                continue
            holders = tuple(h["peerId"] for h in st["holderList"])
            seen.add((st["holderListEpoch"], holders))
            held[peer_of[node]] = set(st["sliversHeldHere"])
            if node == ("a", 1):
                listed = holders
                for h in holders:
                    per_side[peer_side.get(h, "?")] = per_side.get(peer_side.get(h, "?"), 0) + 1
        holes = sum(1 for i, h in enumerate(listed) if i not in held.get(h, set()))
        extra = sum(1 for peer, indexes in held.items() for i in indexes
                    if i >= len(listed) or listed[i] != peer)
        out.append((blob_id, len(seen), per_side, holes, extra))
    return out
read_all("before the cut", [("a", 1), ("b", 1)], 30)
before = lists()
shards = 12
print(f"before the cut: slivers per side of each blob {sorted(set(tuple(sorted(p.items())) for _, _, p, _, _ in before))}")
subprocess.run(["bridge", "link", "set", "dev", "v-a", "isolated", "on"], check=True)
subprocess.run(["bridge", "link", "set", "dev", "v-b", "isolated", "on"], check=True)
cut_at = time.time()
print("cut: the bridge forwards nothing between 10.77.1.0/24 and 10.77.2.0/24")
read_all("during the cut", [("a", 2), ("b", 2)], 60)
# The cut lasts until both sides took the other's holders for gone and repaired: a node notices a peer behind
# the cut after three unanswered pings (up to about 75 s: the connection itself stays open), then waits out the
# grace period (5 s).
def repaired(side):
    return sum(status(n)["repair"]["repairsDone"] for n in nodes if n[0] == side)
wait_until("both sides to repair", 240, lambda: repaired("a") > 0 and repaired("b") > 0)
print(f"both sides repaired {time.time() - cut_at:.0f} s into the cut")
time.sleep(10)
read_all("late in the cut", [("a", 3), ("b", 3)], 60)
repairs = repaired("a") + repaired("b")
subprocess.run(["bridge", "link", "set", "dev", "v-a", "isolated", "off"], check=True)
subprocess.run(["bridge", "link", "set", "dev", "v-b", "isolated", "off"], check=True)
healed_at = time.time()
print(f"healed after {healed_at - cut_at:.0f} s; {repairs} repairs ran during the cut (cut at "
      f"{time.strftime('%H:%M:%S', time.gmtime(cut_at))}, healed at "
      f"{time.strftime('%H:%M:%S', time.gmtime(healed_at))} UTC, for the node logs)")
# Reads go on while the lists converge (in a thread, so the convergence is timed alongside): right after
# healing, from two more nodes.
import threading
read_failure = []
def reads_while_converging():
    try:
        read_all("just after healing", [("a", 5), ("b", 5)], 60)
    except SystemExit as failure:
        read_failure.append(str(failure))
reader = threading.Thread(target=reads_while_converging)
reader.start()
# Converged: every node that keeps a record of a blob holds the same list, and no node keeps a sliver the list
# gives to another (extra slivers beyond n). The rule's bound is one grace period plus two scan intervals after
# the sides can reach each other again (docs/protocol.md §13, "Reunions").
# Each blob's first poll with one list on every node is when its sides agreed; the lists then keep changing
# while the crowded side moves its extra indexes back (one holder after another), so the run ends at the first
# poll where every blob has one list, none is missing or beyond it, and every list is within the cap.
bound = 5 + 2 * 1
converged_at = clean_at = spread_at = reconnected_at = None
cap = shards // 2
first_single = {}
polls = 0
after = []
while time.time() < healed_at + 180:
    if reconnected_at is None and min(status(n)["connectedPeers"] for n in nodes) >= 11:
        reconnected_at = time.time()
    after = lists()
    polls += 1
    now = time.time()
    for blob_id, count, _, _, _ in after:
        if count == 1:
            first_single.setdefault(blob_id, now)
    one_list = all(count == 1 for _, count, _, _, _ in after)
    if converged_at is None and one_list:
        converged_at = now
    clean = one_list and all(holes == 0 and extra == 0 for _, _, _, holes, extra in after)
    spread = one_list and all(max(side.values()) <= cap for _, _, side, _, _ in after)
    if clean and clean_at is None:
        clean_at = now
    if clean and spread:
        spread_at = now
        break
    time.sleep(1)
reader.join()
if read_failure:
    sys.exit(read_failure[0])
single = sum(1 for _, count, _, _, _ in after if count == 1)
holes = sum(h for _, _, _, h, _ in after)
extra = sum(e for _, _, _, _, e in after)
caught_up = sum(status(n)["repair"]["holderListsAdopted"] for n in nodes)
reunions = sum(status(n)["repair"]["reunionListsAdopted"] for n in nodes)
# Nodes redial holders and former holders they miss, and their routing table's peers, not everyone.
fewest = min(status(n)["connectedPeers"] for n in nodes)
print(f"after healing: {single} of {len(blobs)} blobs have one holder list on every node "
      f"(most lists for one blob: {max(c for _, c, _, _, _ in after)}); against node a1's lists, {holes} listed "
      f"slivers missing and {extra} held beyond them; {caught_up} holder lists adopted ({reunions} from former "
      f"holders); fewest peers connected to a node: {fewest} of 11")
def show_lists():
    """Each node's list of every blob with more than one, for the log of a failed run."""
    names = {peer: f"{n[0]}{n[1]}" for n, peer in peer_of.items()}
    for blob_id, count, _, _, _ in after:
        if count == 1:
            continue
        print(f"blob {blob_id}:", file=sys.stderr)
        for node in nodes:
            code, body = call("GET", url(*node) + f"/v1/blobs/{blob_id}/status", timeout=20)
            if code == 200:
                st = json.loads(body)
                print(f"  {node[0]}{node[1]}: epoch {st['holderListEpoch']} "
                      f"{' '.join(names.get(h['peerId'], '?') for h in st['holderList'])} "
                      f"holds {st['sliversHeldHere']}", file=sys.stderr)
def show_misplaced():
    """Each sliver missing from its listed holder or held beyond the list, for the log of a failed run."""
    names = {peer: f"{n[0]}{n[1]}" for n, peer in peer_of.items()}
    for blob_id, _, _, holes, extra in after:
        if holes == 0 and extra == 0:
            continue
        held = {}
        listed = ()
        for node in nodes:
            code, body = call("GET", url(*node) + f"/v1/blobs/{blob_id}/status", timeout=20)
            if code == 200:
                st = json.loads(body)
                held[f"{node[0]}{node[1]}"] = sorted(st["sliversHeldHere"])
                if node == ("a", 1):
                    listed = [names.get(h["peerId"], "?") for h in st["holderList"]]
                    epoch = st["holderListEpoch"]
        print(f"blob {blob_id}: a1's list (epoch {epoch}) {' '.join(listed)}; held: "
              + " ".join(f"{n}={','.join(map(str, i))}" for n, i in held.items()), file=sys.stderr)
if converged_at is None:
    show_lists()
    sys.exit("after healing: the holder lists did not converge within 180 s")
since = f"{reconnected_at - healed_at:.0f} s" if reconnected_at else "never"
agreed = max(first_single.values()) - healed_at if len(first_single) == len(blobs) else None
print(f"every blob had one list on every node {agreed:.0f} s after healing (its first poll with one; polls took "
      f"{(time.time() - healed_at) / max(polls, 1):.1f} s each), all at one poll {converged_at - healed_at:.0f} s "
      f"after healing; every node connected to all 11 others {since} after healing (the rule's bound, counted "
      f"from when the sides reach each other: {bound} s)")
# The rule's bound, measured through polls of a loaded machine: a blob whose sides agree only after three times
# the bound is a regression, not sampling (with optimised dependencies the sides agree within about the bound).
if agreed is None or agreed > 3 * bound:
    show_lists()
    sys.exit(f"after healing: some blob's nodes first held one list only {agreed} s after healing, more than "
             f"three times the rule's bound of {bound} s")
if clean_at is None:
    show_misplaced()
    sys.exit(f"after healing: {holes} listed slivers missing, {extra} held beyond the lists 180 s after healing")
print(f"every listed sliver held by its holder and none beyond {clean_at - healed_at:.0f} s after healing")
# The reunions themselves, from the nodes' logs: when each node adopted a list its former holders agreed on.
import datetime, glob
reunited = []
for log in glob.glob(f"{work}/node-*/node.log"):
    for line in open(log, errors="replace"):
        if "adopted the list former holders agree on" in line:
            at = datetime.datetime.strptime(line.split()[0][:26], "%Y-%m-%dT%H:%M:%S.%f")
            reunited.append(at.replace(tzinfo=datetime.timezone.utc).timestamp() - healed_at)
if reunited:
    within = sum(1 for t in reunited if t <= bound)
    print(f"lists adopted from former holders (node logs): {len(reunited)}, the first {min(reunited):.0f} s after "
          f"healing, {within} within the bound ({bound} s); the later ones follow the lists the crowded side's "
          f"holders make moving their extra indexes back")
if spread_at is None:
    show_misplaced()
    sides = sorted(set(tuple(sorted(p.items())) for _, _, p, _, _ in after))
    sys.exit(f"after healing: slivers per side of each blob {sides}, not back within the cap of {cap} per /24 "
             f"with every listed sliver in place 180 s after healing")
print(f"every blob back within the cap ({cap} slivers per /24), each sliver with its listed holder and none "
      f"beyond, {spread_at - healed_at:.0f} s after healing")
read_all("after healing", [("a", 4), ("b", 4)], 60)
print("partition test: every blob read byte-identical from both sides before, during and after the cut")
PY
