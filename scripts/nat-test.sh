#!/usr/bin/env bash
# NAT test with real processes (issue 17): 12 `floe node`s in the NAT testbed (scripts/testbed/nat.sh): 3 on
# public addresses, 6 behind endpoint-independent NATs (two of them behind a router with miniupnpd), 3 behind an
# address-and-port-dependent ("symmetric") NAT. Each node's gateway listens on 127.0.0.1 inside its namespace.
#
# It checks issue 17's targets: every NATed node reserves on relays and serves the DHT; the hosts behind the
# miniupnpd router get their port mapped (and symmetric-NAT nodes then reach them directly); 30 blobs (1 KiB to
# 16 MiB) stored through a node behind a cone NAT read back byte-identical through every node; every connected
# pair of cone-NAT nodes on different routers ends up directly connected (hole punched); the symmetric-NAT nodes
# stay connected through relays; after kill -9 of two thirds of the nodes (the writer and other NATed ones among
# them) every blob still reads through every survivor; a js-libp2p peer (scripts/js-peer/kad.mjs) joins through a
# floe node, pings it and finds peers through floe's Kademlia. It reports the swarm's shape (per node: DHT mode, holder
# candidates, direct and relayed-only peers, external addresses), DCUtR events, and the read p50 of a 1 MiB blob
# from a public node, a hole-punched one and one behind the symmetric NAT.
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
for tool in node npm; do
  command -v "$tool" > /dev/null || { echo "nat test: $tool is not installed (Node.js 20 with npm runs the js-libp2p peer)" >&2; exit 1; }
done
if [ ! -d scripts/js-peer/node_modules/@libp2p/kad-dht ]; then
  (cd scripts/js-peer && npm ci --no-audit --no-fund --loglevel=error) \
    || { echo "nat test: npm ci in scripts/js-peer failed (is the npm registry reachable?)" >&2; exit 1; }
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
while read -r name ns address port; do
  dir="$work/$name"; mkdir -p "$dir"
  extra=(); [ "$name" = pub1 ] || extra=(--bootstrap "$bootstrap")
  # UPnP is on by default; only the hosts behind the miniupnpd router have one to ask.
  upnp=(--no-upnp); [[ "$name" == upnp-* ]] && upnp=()
  RUST_LOG=${FLOE_NAT_LOG:-floe_node=info} ip netns exec "$ns" "$floe" node \
    --listen "/ip4/$address/tcp/$port" --http 127.0.0.1:8080 --data-dir "$dir" "${flags[@]}" "${upnp[@]}" "${extra[@]}" \
    > "$dir/node.log" 2>&1 &
  pids+=($!)
  echo "$name $!" >> "$work/pids"
  [ "$name" = pub1 ] && sleep 1
done < "$work/hosts"

python3 - "$work" <<'PY'
import json, os, random, signal, statistics, subprocess, sys, time
work = sys.argv[1]
hosts = [line.split() for line in open(f"{work}/hosts")]
pids = dict(line.split() for line in open(f"{work}/pids"))
failures = []
def check(ok, what):
    print(("ok: " if ok else "FAILED: ") + what)
    if not ok:
        failures.append(what)
def call(ns, method, path, body=None, timeout=60):
    """curl inside a node's namespace; (status, bytes, seconds)."""
    args = ["ip", "netns", "exec", ns, "curl", "-s", "-o", "-", "-w", "\n%{http_code} %{time_total}", "-X",
            method, "--max-time", str(timeout), f"http://127.0.0.1:8080{path}"]
    if body is not None:
        args += ["--data-binary", "@-"]
    out = subprocess.run(args, input=body, capture_output=True).stdout
    head, _, tail = out.rpartition(b"\n")
    code, _, secs = tail.decode().partition(" ")
    return int(code or 0), head, float(secs or 0)
def status(ns):
    code, body, _ = call(ns, "GET", "/v1/node/status", timeout=10)
    return json.loads(body) if code == 200 else None
router = lambda name: name.split("-")[0]  # pub1, cone1, cone2, upnp, sym
cone_class = [h for h in hosts if router(h[0]) in ("cone1", "cone2", "upnp")]
sym = [h for h in hosts if router(h[0]) == "sym"]
natted = cone_class + sym

# Formation: every NATed node holds a relay reservation (a confirmed /p2p-circuit address) and serves the DHT.
started = time.time()
while True:
    answers = {name: status(ns) for name, ns, *_ in hosts}
    reserved = {h[0] for h in natted
                if any("/p2p-circuit" in a for a in ((answers[h[0]] or {}).get("reachability", {})
                                                      .get("externalAddresses", [])))}
    if len(reserved) == len(natted) or time.time() - started > 60:
        break
    time.sleep(1)
check(all(answers.values()), "every node's gateway answers")
check(len(reserved) == len(natted), f"{len(reserved)} of {len(natted)} NATed nodes hold a relay reservation "
      f"(after {time.time() - started:.1f} s)")
modes = {name: (a or {}).get("reachability", {}).get("dhtMode") for name, a in answers.items()}
check(all(m == "server" for m in modes.values()), "every node serves the DHT (NATed ones through their relays)")

# 30 blobs, 1 KiB to 16 MiB, stored through a node behind a cone NAT and read through every node, once that node
# knows the swarm: every other node but those behind the symmetric NAT, which it reaches only through relays.
writer = next(h for h in hosts if h[0] == "cone1-h1")
wanted = len(hosts) - len(sym) - 1
while (status(writer[1]) or {}).get("knownPeers", 0) < wanted and time.time() - started < 60:
    time.sleep(1)
print(f"{writer[0]} knows {status(writer[1])['knownPeers']} holder candidates of the {wanted} it could "
      f"(after {time.time() - started:.1f} s)")
rng = random.Random(17)
sizes = [round(1024 * (16384 ** (i / 29))) for i in range(30)]
blobs = []
for size in sizes:
    data = rng.randbytes(size)
    code, body, _ = call(writer[1], "PUT", "/v1/blobs", body=data, timeout=180)
    if code != 200:
        print(f"put of {size} bytes through {writer[0]}: {code} {body[:300]!r}")
        continue
    answer = json.loads(body)
    blob = answer.get("newlyCreated", {}).get("blobObject", {}).get("blobId") or answer["alreadyCertified"]["blobId"]
    blobs.append((blob, data))
check(len(blobs) == len(sizes), f"{len(blobs)} of {len(sizes)} blobs (1 KiB to 16 MiB) stored through {writer[0]}")
def read_all(name, ns):
    """How many blobs read back byte-identical through a node; each miss is reported."""
    good = 0
    for b, d in blobs:
        code, body, took = call(ns, "GET", f"/v1/blobs/{b}", timeout=120)
        if (code, body) == (200, d):
            good += 1
        else:
            print(f"  {name}: blob {b} ({len(d)} bytes) read {code} after {took:.1f} s: {body[:200]!r}")
    return good
ok = {}
for name, ns, *_ in hosts:
    ok[name] = read_all(name, ns)
print("reads, byte-identical, per node: " + ", ".join(f"{n} {g}/{len(blobs)}" for n, g in ok.items()))
check(all(g == len(blobs) for g in ok.values()), "every blob reads back through every node")

# The swarm's shape after the traffic: who reaches whom, directly or only through a relay.
answers = {name: status(ns) for name, ns, *_ in hosts}
ids = {name: a["peerId"] for name, a in answers.items()}
names = {v: k for k, v in ids.items()}
def link(a, b):
    r = answers[a]["reachability"]
    return "direct" if ids[b] in r["directPeers"] else "relayed" if ids[b] in r["relayedOnlyPeers"] else None
print("\n| node | DHT | holder candidates | connected | direct | relayed only | external addresses |")
print("|---|---|---|---|---|---|---|")
for name, ns, address, _ in hosts:
    a = answers[name]; r = a["reachability"]
    ext = ", ".join(sorted({x.split("/p2p/")[0] + ("/…/p2p-circuit" if "p2p-circuit" in x else "")
                            for x in r["externalAddresses"]}))
    print(f"| {name} | {r['dhtMode']} | {a['knownPeers']} | {a['connectedPeers']} | {len(r['directPeers'])} "
          f"| {len(r['relayedOnlyPeers'])} | {ext} |")
pairs = [(a[0], b[0]) for i, a in enumerate(cone_class) for b in cone_class[i + 1:] if router(a[0]) != router(b[0])]
links = {p: link(*p) or link(p[1], p[0]) for p in pairs}
connected = [p for p in pairs if links[p]]
direct = [p for p in connected if links[p] == "direct"]
# A punch that failed is tried again with backoff (node::nat::PunchRetries); give the last tries time to land.
waited = 0
while len(direct) < len(connected) and waited < 120:
    time.sleep(5)
    waited += 5
    answers = {name: status(ns) for name, ns, *_ in hosts}
    links = {p: link(*p) or link(p[1], p[0]) for p in pairs}
    connected = [p for p in pairs if links[p]]
    direct = [p for p in connected if links[p] == "direct"]
if waited:
    print(f"waited {waited} s more for hole punches retried with backoff")
print(f"\ncone-NAT pairs on different routers: {len(pairs)}; connected {len(connected)}; "
      f"direct (hole punched) {len(direct)}")
for p in connected:
    if links[p] != "direct":
        print(f"  relayed only: {p[0]} - {p[1]}")
punches = {}
forwarded = {}
for name, ns, *_ in hosts:
    _, body, _ = call(ns, "GET", "/metrics", timeout=10)
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("libp2p_dcutr_events_total{"):
            event = line.split('event="', 1)[1].split('"', 1)[0]
            punches[event] = punches.get(event, 0) + int(float(line.rsplit(" ", 1)[1]))
        for metric in ("floe_read_requests_forwarded_total", "floe_reads_forwarded_total"):
            if line.startswith(metric + " "):
                forwarded.setdefault(metric, {})[name] = int(float(line.rsplit(" ", 1)[1]))
print("DCUtR events over all nodes: " + (", ".join(f"{k} {v}" for k, v in sorted(punches.items())) or "none"))
asked = forwarded.get("floe_read_requests_forwarded_total", {})
relays = forwarded.get("floe_reads_forwarded_total", {})
print("read requests sent through a relay to a relayed-only holder: "
      + (", ".join(f"{n} {c}" for n, c in asked.items() if c) or "none")
      + "; forwarded by relays: " + (", ".join(f"{n} {c}" for n, c in relays.items() if c) or "none"))
# Time to the first direct connection by hole punching, per cone-NAT node: from its first log line (start) to its
# first "hole punched" line.
from datetime import datetime
def stamp(line):
    try:
        return datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00"))
    except ValueError:
        return None
firsts = {}
for name, *_ in cone_class:
    lines = open(f"{work}/{name}/node.log", errors="replace").read().splitlines()
    start = next((t for t in map(stamp, lines) if t), None)
    punched = next((stamp(l) for l in lines if "hole punched" in l), None)
    if start and punched:
        firsts[name] = (punched - start).total_seconds()
if firsts:
    print("time from start to the first hole-punched connection, per cone-NAT node (s): "
          + ", ".join(f"{n} {t:.1f}" for n, t in firsts.items())
          + f"; median {statistics.median(firsts.values()):.1f}")
check(len(direct) == len(connected) and len(connected) > 0,
      f"every connected pair of cone-NAT nodes on different routers is direct ({len(direct)}/{len(connected)})")
# UPnP: the hosts behind the miniupnpd router have their port mapped and confirmed (AutoNAT v2 dials it back),
# so even the symmetric-NAT nodes, whose hole punches fail, reach them directly.
upnp_hosts = [h for h in hosts if router(h[0]) == "upnp"]
mapped = [h[0] for h in upnp_hosts
          if any(x.startswith(f"/ip4/198.20.3.1/tcp/{h[3]}") and "p2p-circuit" not in x
                 for x in answers[h[0]]["reachability"]["externalAddresses"])]
check(len(mapped) == len(upnp_hosts),
      f"{len(mapped)} of {len(upnp_hosts)} hosts behind the UPnP router have their mapped port as external address")
sym_upnp = [(s[0], u[0]) for s in sym for u in upnp_hosts]
sym_upnp_links = {p: link(*p) or link(p[1], p[0]) for p in sym_upnp}
sym_upnp_connected = [p for p in sym_upnp if sym_upnp_links[p]]
sym_upnp_direct = [p for p in sym_upnp_connected if sym_upnp_links[p] == "direct"]
check(len(sym_upnp_connected) > 0 and len(sym_upnp_direct) == len(sym_upnp_connected),
      f"every connected pair of a symmetric-NAT node and a UPnP-mapped host is direct "
      f"({len(sym_upnp_direct)}/{len(sym_upnp_connected)})")
sym_reach = [h[0] for h in sym if any(link(h[0], p) for p in ids)]
check(len(sym_reach) == len(sym), f"{len(sym_reach)} of {len(sym)} symmetric-NAT nodes connected and reserved on relays")

# Read p50 of a 1 MiB blob: a public reader, one behind a cone NAT (hole-punched), one behind the symmetric NAT.
mib = next(b for b, d in blobs if len(d) >= 1 << 20)
print("\n| reader | 1 MiB read p50 (ms) | p90 (ms) |\n|---|---|---|")
p50 = {}
for name in ["pub2", "cone2-h1", "sym-h1"]:
    ns = next(h[1] for h in hosts if h[0] == name)
    times = sorted(call(ns, "GET", f"/v1/blobs/{mib}", timeout=60)[2] * 1000 for _ in range(15))
    p50[name] = statistics.median(times)
    print(f"| {name} | {p50[name]:.1f} | {times[int(len(times) * 0.9)]:.1f} |")
print(f"hole-punched reader against public: {p50['cone2-h1'] / p50['pub2']:.2f}x (target 1.5x)")

# A foreign peer: js-libp2p joins through pub1, pings it, and walks floe's Kademlia to the other nodes.
js_ns = next(h[1] for h in hosts if h[0] == "pub2")
bootstrap = f"/ip4/198.51.100.11/tcp/4001/p2p/{ids['pub1']}"
js = subprocess.run(["ip", "netns", "exec", js_ns, "node", "kad.mjs", bootstrap, ids["cone2-h1"], "8"],
                    cwd="scripts/js-peer", capture_output=True, text=True, timeout=90)
print("\njs-libp2p peer (in pub2's namespace):\n" + "".join("  " + l + "\n" for l in (js.stdout + js.stderr).splitlines()))
check(js.returncode == 0, "a js-libp2p peer pinged floe and found peers (a NATed one by ID) through floe's DHT")

# kill -9 two thirds of the nodes, NATed ones included (the writer too); every blob still reads.
survivors = ["pub1", "cone1-h2", "cone2-h1", "upnp-h2"]
for name, pid in pids.items():
    if name not in survivors:
        os.kill(int(pid), signal.SIGKILL)
time.sleep(2)
ok = {}
for name in survivors:
    ns = next(h[1] for h in hosts if h[0] == name)
    ok[name] = read_all(name, ns)
print(f"\nafter kill -9 of {len(pids) - len(survivors)} of {len(pids)} nodes, reads per survivor: "
      + ", ".join(f"{n} {g}/{len(blobs)}" for n, g in ok.items()))
check(all(g == len(blobs) for g in ok.values()), "every blob still reads through every survivor")
sys.exit(1 if failures else 0)
PY
