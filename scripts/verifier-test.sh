#!/usr/bin/env bash
# The browser verifier (verifier/, issue 19 part 3) against a real 4-node devnet and a lying gateway, in Node.js
# (the same module and JavaScript a page loads): builds floe-verifier for wasm32-unknown-unknown (adding the
# target with rustup if it is missing), stores a 16 MiB blob, and runs verifier/js/test.mjs, which puts a proxy
# that flips bytes in front of one gateway. Ends with `verifier: N passed, M failed`; exits non-zero on any
# failure. FLOE_PROFILE=dev uses a debug floe build (the module is always built in release).
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "verifier test: $*" >&2; exit 1; }
command -v node > /dev/null || fail "node is not installed (Node.js 20 or newer is needed)"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
  || fail "Node.js $(node --version) is too old: 20 or newer is needed"
if ! rustup target list --installed 2> /dev/null | grep -qx wasm32-unknown-unknown; then
  echo "verifier test: adding the wasm32-unknown-unknown target with rustup" >&2
  rustup target add wasm32-unknown-unknown > /dev/null || fail "rustup target add wasm32-unknown-unknown failed"
fi
cargo build --quiet --release -p floe-verifier --target wasm32-unknown-unknown \
  || fail "building floe-verifier for wasm32-unknown-unknown failed"
wasm=$PWD/target/wasm32-unknown-unknown/release/floe_verifier.wasm
[ -f "$wasm" ] || fail "no module at $wasm"
echo "verifier test: module $(wc -c < "$wasm") bytes"
# shellcheck source=scripts/stop-nodes.sh
source scripts/stop-nodes.sh
. scripts/floe-binary.sh
work=$(mktemp -d)
"$floe" devnet --nodes 4 --base-port 27400 --data-dir "$work/devnet" > "$work/devnet.out" 2>&1 &
devnet=$!
cleanup() {
  kill -INT "$devnet" 2> /dev/null || true; wait "$devnet" 2> /dev/null || true
  stop_nodes_under "$work"
  rm -rf "$work"
}
trap cleanup EXIT
gateways=()
for i in 0 1 2 3; do gateways+=("http://127.0.0.1:$((27400 + 1000 + i))"); done
for gw in "${gateways[@]}"; do
  for _ in $(seq 1 150); do
    known=$(curl -sf --max-time 2 "$gw/v1/node/status" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{console.log(JSON.parse(s).knownPeers)}catch{console.log(0)}})' || true)
    [ "${known:-0}" -ge 3 ] && break
    sleep 0.2
  done
  [ "${known:-0}" -ge 3 ] || fail "$gw did not see the devnet form"
done
head -c $((16 << 20)) /dev/urandom > "$work/blob.bin"
answer=$(curl -sf --max-time 120 -X PUT --data-binary "@$work/blob.bin" "${gateways[0]}/v1/blobs") \
  || fail "storing the 16 MiB blob failed"
blob_id=$(printf '%s' "$answer" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log((j.newlyCreated||{}).blobObject?.blobId||j.alreadyCertified.blobId)})')
echo "verifier test: stored $blob_id (16 MiB)"
args=()
for gw in "${gateways[@]}"; do args+=(--gateway "$gw"); done
# --blob-id=ID: a base64url ID may start with "-", which node's parseArgs would take for an option.
timeout 300 node verifier/js/test.mjs --wasm "$wasm" "${args[@]}" --blob-id="$blob_id" --blob-file "$work/blob.bin"
