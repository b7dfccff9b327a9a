#!/usr/bin/env bash
# A foreign peer: js-libp2p (scripts/js-peer, default ping and identify settings) dials a fresh floe node over
# TCP, pings it three times on the new connection and reads its agent version, which must be floe/<version>.
# FLOE_PROFILE=dev uses a debug build; FLOE_BIN=path uses that binary and builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$PWD/scripts/js-peer
fail() { echo "js peer test: $*" >&2; exit 1; }
for tool in node npm; do
  command -v "$tool" > /dev/null || fail "$tool is not installed (Node.js 20 or newer with npm is needed)"
done
if [ ! -d "$dir/node_modules/libp2p" ]; then
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) \
    || fail "npm ci in scripts/js-peer failed (is the npm registry reachable?)"
fi
if [ -n "${FLOE_BIN:-}" ]; then floe=$FLOE_BIN; else . scripts/floe-binary.sh; fi
work=$(mktemp -d)
node_pid=
on_exit() {
  status=$?
  if [ -n "$node_pid" ]; then kill -TERM "$node_pid" 2> /dev/null || true; wait "$node_pid" 2> /dev/null || true; fi
  [ "$status" -eq 0 ] || tail -n 30 "$work/node.log" >&2 2> /dev/null || true
  rm -rf "$work"
}
trap on_exit EXIT
# QUIC and TCP, QUIC named first: node.json must still list TCP first, since a peer that takes the first address
# (this one has no QUIC) has to be able to dial it.
"$floe" node --data-dir "$work" --listen /ip4/127.0.0.1/udp/0/quic-v1 --listen /ip4/127.0.0.1/tcp/0 \
  --http 127.0.0.1:0 --no-upnp --handoff-timeout 0s > "$work/node.log" 2>&1 &
node_pid=$!
for _ in $(seq 1 150); do [ -s "$work/node.json" ] && break; sleep 0.2; done
[ -s "$work/node.json" ] || fail "the floe node did not start"
addr=$(node -p 'require(process.argv[1]).listen[0]' "$work/node.json")
case "$addr" in */tcp/*) ;; *) fail "node.json lists $addr first, not a TCP address";; esac
out=$(cd "$dir" && timeout 60 node ping.mjs "$addr" 2>&1) || { echo "$out"; fail "the js-libp2p peer could not ping floe"; }
echo "$out"
grep -q "^remote agent version: floe/" <<< "$out" || fail "identify did not report floe/<version> as the agent"
echo "js peer test: a js-libp2p peer pinged floe on a fresh connection and saw its agent version"
