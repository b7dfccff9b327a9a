#!/usr/bin/env bash
# NAT test with real processes (issue 17): 12 `floe node`s in the NAT testbed (scripts/testbed/nat.sh): 3 on
# public addresses, 6 behind endpoint-independent NATs (two of them behind a router with miniupnpd), 3 behind an
# address-and-port-dependent ("symmetric") NAT. Each node's gateway listens on 127.0.0.1 inside its namespace.
#
# It reports, per node: peers known and connected, its listen and external addresses, relay reservations and
# hole punches (from /v1/node/status and /metrics); then stores blobs through a NATed node and reads each through
# every node. It checks what floe does today (every blob stored through a NATed node reads back through every
# node) and reports the rest as measurements.
#
# Needs root (namespaces, nftables). Every namespace and process it creates is removed on exit, pass or fail;
# nodes are stopped by PID.
#
#   scripts/nat-test.sh          # FLOE_PROFILE=dev uses a debug build; FLOE_TEST_KEEP=1 keeps logs and data
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "nat test: needs root to create network namespaces (run .ci/run as root)" >&2
  exit 1
fi
. scripts/floe-binary.sh
# shellcheck source=scripts/testbed/nat.sh
source scripts/testbed/nat.sh
work=$(mktemp -d)
pids=()
cleanup() {
  status=$?
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$status" -ne 0 ]; then
    echo "nat test failed ($status); the last lines of each node's log follow" >&2
    for log in "$work"/*/node.log; do echo "== $log" >&2; tail -n 8 "$log" >&2 || true; done
  fi
  nat_down
  if [ -n "${FLOE_TEST_KEEP:-}" ]; then echo "node data and logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
nat_up
nat_hosts > "$work/hosts"
flags=(--cache-size 0 --repair-interval 2s)
bootstrap=/ip4/198.51.100.11/tcp/4001
while read -r name ns address; do
  dir="$work/$name"; mkdir -p "$dir"
  extra=(); [ "$name" = pub1 ] || extra=(--bootstrap "$bootstrap")
  # UPnP is on by default; only the hosts behind the miniupnpd router have one to ask.
  upnp=(--no-upnp); [[ "$name" == upnp-* ]] && upnp=()
  RUST_LOG=${FLOE_NAT_LOG:-floe_node=info} ip netns exec "$ns" "$floe" node \
    --listen "/ip4/$address/tcp/4001" --http 127.0.0.1:8080 --data-dir "$dir" "${flags[@]}" "${upnp[@]}" "${extra[@]}" \
    > "$dir/node.log" 2>&1 &
  pids+=($!)
  [ "$name" = pub1 ] && sleep 1
done < "$work/hosts"

python3 - "$work" <<'PY'
import json, os, random, subprocess, sys, time
work = sys.argv[1]
hosts = [line.split() for line in open(f"{work}/hosts")]
def call(ns, method, path, body=None, timeout=60):
    """curl inside a node's namespace; (status, bytes)."""
    args = ["ip", "netns", "exec", ns, "curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", method,
            "--max-time", str(timeout), f"http://127.0.0.1:8080{path}"]
    if body is not None:
        args += ["--data-binary", "@-"]
    out = subprocess.run(args, input=body, capture_output=True).stdout
    head, _, code = out.rpartition(b"\n")
    return int(code or 0), head
def status(ns):
    code, body = call(ns, "GET", "/v1/node/status", timeout=10)
    return json.loads(body) if code == 200 else None
deadline = time.time() + 90
while True:
    answers = {name: status(ns) for name, ns, _ in hosts}
    known = {name: (a or {}).get("knownPeers", 0) for name, a in answers.items()}
    if all(k >= len(hosts) - 1 for k in known.values()) or time.time() > deadline:
        break
    time.sleep(2)
print("| node | address | peers known | connected |")
print("|---|---|---|---|")
for name, ns, address in hosts:
    a = answers[name] or {}
    print(f"| {name} | {address} | {a.get('knownPeers')} | {a.get('connectedPeers')} |")
formed = sum(1 for k in known.values() if k >= len(hosts) - 1)
print(f"\n{formed} of {len(hosts)} nodes know every other node")
# Hole punching (libp2p's DCUtR metrics), summed over the nodes.
punches = {}
for name, ns, _ in hosts:
    code, body = call(ns, "GET", "/metrics", timeout=10)
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("libp2p_dcutr_events_total{"):
            event = line.split('event="', 1)[1].split('"', 1)[0]
            punches[event] = punches.get(event, 0) + int(float(line.rsplit(" ", 1)[1]))
print("DCUtR events over all nodes: " + (", ".join(f"{k} {v}" for k, v in sorted(punches.items())) or "none"))
if not all(answers.values()):
    sys.exit("a node does not answer its gateway")

# Blobs stored through a node behind the cone NAT, read back through every node.
writer = next(h for h in hosts if h[0] == "cone1-h1")
rng = random.Random(17)
blobs = []
for size in [1 << 10, 64 << 10, 1 << 20]:
    data = rng.randbytes(size)
    code, body = call(writer[1], "PUT", "/v1/blobs", body=data, timeout=120)
    if code != 200:
        print(f"put of {size} bytes through {writer[0]}: {code} {body[:300]!r}")
        continue
    answer = json.loads(body)
    blob = answer.get("newlyCreated", {}).get("blobObject", {}).get("blobId") or answer["alreadyCertified"]["blobId"]
    blobs.append((blob, data))
print(f"\n{len(blobs)} of 3 blobs stored through {writer[0]}")
ok = {}
for name, ns, _ in hosts:
    good = 0
    for blob, data in blobs:
        code, body = call(ns, "GET", f"/v1/blobs/{blob}", timeout=60)
        good += code == 200 and body == data
    ok[name] = good
print("reads, byte-identical, per node: " + ", ".join(f"{n} {g}/{len(blobs)}" for n, g in ok.items()))
# Checked today: every blob stored through a NATed node reads back through every node. Reported only (issue 17's
# targets, not met yet): how many nodes know every other one.
everywhere = all(g == len(blobs) for g in ok.values())
sys.exit(0 if len(blobs) == 3 and everywhere else 1)
PY
