#!/usr/bin/env bash
# Hot-blob gateway throughput against nginx serving the same bytes as a static file, both measured with wrk in
# the same run on the same machine (wrk, nginx and the nodes share its cores).
#
#   scripts/bench-gateway.sh [SIZE_BYTES] [SECONDS] [CONNECTIONS]    # default: 1 MiB, 10 s, 16 connections
#
# Starts a 4-node devnet (release build, default 64 MiB hot-blob cache), stores one blob through node 0, reads
# it once through node 1 (which then holds it in its cache), and runs wrk against node 1's gateway and against
# nginx (2 workers, sendfile on). Installs nginx and wrk with apt-get when missing. Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/stop-nodes.sh
source scripts/stop-nodes.sh
size=${1:-1048576}
secs=${2:-10}
conns=${3:-16}
missing=()
command -v wrk > /dev/null || missing+=(wrk)
command -v nginx > /dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if ((${#missing[@]})); then
  apt-get update -qq > /dev/null && apt-get install -y -qq "${missing[@]}" > /dev/null
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --quiet -p floe-node
work=$(mktemp -d)
target/release/floe devnet --nodes 4 --base-port 45500 --data-dir "$work/devnet" > "$work/devnet.out" 2>&1 &
devnet=$!
cleanup() {
  kill -INT "$devnet" 2>/dev/null || true; wait "$devnet" 2>/dev/null || true
  stop_nodes_under "$work"
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/www" "$work/logs"
chmod 755 "$work" "$work/www"  # nginx workers run as an unprivileged user
head -c "$size" /dev/urandom > "$work/www/blob"
chmod 644 "$work/www/blob"
cat > "$work/nginx.conf" <<EOF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  server { listen 127.0.0.1:45480; root $work/www; }
}
EOF
"$nginx_bin" -c "$work/nginx.conf" -p "$work"
python3 - "$work" <<'PY'
import json, sys, time, urllib.request
work = sys.argv[1]
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
data = open(f"{work}/www/blob", "rb").read()
req = urllib.request.Request(f"{gw[0]}/v1/blobs", data=data, method="PUT")
blob_id = json.load(urllib.request.urlopen(req, timeout=60))["newlyCreated"]["blobObject"]["blobId"]
assert urllib.request.urlopen(f"{gw[1]}/v1/blobs/{blob_id}", timeout=60).read() == data
assert urllib.request.urlopen("http://127.0.0.1:45480/blob", timeout=10).read() == data
open(f"{work}/floe-url", "w").write(f"{gw[1]}/v1/blobs/{blob_id}")
PY
run() { # name url → "requests/s MB/s"
  wrk -t2 -c"$conns" -d"${secs}s" "$2" > "$work/wrk-$1"
  python3 - "$work/wrk-$1" "$size" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errors: sys.exit(f"wrk saw {errors.group(1)} error responses:\n{text}")
print(f"{rps:.0f} {rps * int(sys.argv[2]) / 1e6:.0f}")
PY
}
read -r nginx_rps nginx_mbs < <(run nginx "http://127.0.0.1:45480/blob")
read -r floe_rps floe_mbs < <(run floe "$(cat "$work/floe-url")")
echo "blob: $size bytes; wrk -t2 -c$conns -d${secs}s; loopback, release build"
echo
echo "| server | requests/s | MB/s | ratio |"
echo "|---|---|---|---|"
echo "| nginx (static file, sendfile) | $nginx_rps | $nginx_mbs | 1.00 |"
python3 -c "import sys; f,n=float(sys.argv[1]),float(sys.argv[2]); print(f'| floe gateway (hot blob) | {sys.argv[1]} | {sys.argv[3]} | {f/n:.2f} |')" "$floe_rps" "$nginx_rps" "$floe_mbs"
