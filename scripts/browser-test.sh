#!/usr/bin/env bash
# Browser test: a 4-node `floe devnet`, two blobs stored with curl (a text and a WebM clip), then headless Chromium
# (Debian's /usr/bin/chromium, driven by playwright-core) checks the status page at a gateway's `/`, its blob
# lookup, cross-origin fetch() with Range, a cross-origin <video> that plays and seeks, a published site, the
# WebAssembly verifier through a lying gateway, and the site by its name across `floe site update`
# (scripts/browser-test/test.mjs). Ends with `browser: N passed, M failed`; exits non-zero on any failure.
# FLOE_PROFILE=dev uses a debug build; FLOE_BIN=path uses that binary and builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$PWD/scripts/browser-test
base_port=24700
nodes=4

fail() { echo "browser test: $*" >&2; exit 1; }

# 1. Tools: Debian's Chromium (never a browser download), Node.js, and playwright-core from the lockfile.
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo > /dev/null; then sudo "$@"; else return 1; fi; }
if [ ! -x /usr/bin/chromium ]; then
  echo "browser test: /usr/bin/chromium is missing; installing Debian's chromium package" >&2
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -q chromium > /dev/null \
    || { as_root apt-get update -q > /dev/null && as_root apt-get install -y -q chromium > /dev/null; } \
    || fail "could not install Debian's chromium package (apt-get install -y chromium); install it as root, then rerun"
  [ -x /usr/bin/chromium ] || fail "apt-get installed chromium, but /usr/bin/chromium is still missing"
fi
for tool in node npm curl; do
  command -v "$tool" > /dev/null || fail "$tool is not installed (Node.js 20 or newer with npm, and curl, are needed)"
done
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
  || fail "Node.js $(node --version) is too old: playwright-core needs 20 or newer"
pinned=$(node -p 'require(process.argv[1]).dependencies["playwright-core"]' "$dir/package.json")
installed=$(node -p 'try { require(process.argv[1]).version } catch { "" }' \
  "$dir/node_modules/playwright-core/package.json")
if [ "$installed" != "$pinned" ]; then
  echo "browser test: npm ci in scripts/browser-test (playwright-core $pinned; no browser download)" >&2
  (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) \
    || fail "npm ci in scripts/browser-test failed (is the npm registry reachable?)"
fi

# 2. The devnet.
if [ -n "${FLOE_BIN:-}" ]; then
  floe=$FLOE_BIN
else
  . scripts/floe-binary.sh
fi
[ -x "$floe" ] || fail "no floe binary at $floe"
work=$(mktemp -d)
devnet=
tester=
node_pids=()
on_exit() {
  status=$?
  trap - EXIT INT TERM
  if [ -n "$tester" ] && kill -0 "$tester" 2> /dev/null; then
    kill -TERM "$tester" 2> /dev/null || true
    wait "$tester" 2> /dev/null || true
  fi
  if [ -n "$devnet" ] && kill -0 "$devnet" 2> /dev/null; then
    # The devnet stops its nodes on Ctrl-C (each gets SIGTERM and up to 5 s).
    kill -INT "$devnet" 2> /dev/null || true
    for _ in $(seq 1 150); do kill -0 "$devnet" 2> /dev/null || break; sleep 0.2; done
    if kill -0 "$devnet" 2> /dev/null; then
      echo "browser test: the devnet did not stop within 30 s of Ctrl-C; killing it" >&2
      kill -KILL "$devnet" 2> /dev/null || true
    fi
  fi
  [ -z "$devnet" ] || wait "$devnet" 2> /dev/null || true
  # Nodes the devnet left behind, by the PIDs it started them with (only if they still run a floe node of ours).
  for pid in "${node_pids[@]}"; do
    if grep -qa -- "$work/data" "/proc/$pid/cmdline" 2> /dev/null; then
      echo "browser test: node $pid outlived the devnet; stopping it" >&2
      kill -TERM "$pid" 2> /dev/null || true; sleep 1; kill -KILL "$pid" 2> /dev/null || true
    fi
  done
  if [ "$status" -ne 0 ]; then
    echo "browser test failed ($status); devnet output and the end of each node's log follow" >&2
    cat "$work/devnet.out" >&2 2> /dev/null || true
    tail -n 15 "$work"/data/node-*/node.log >&2 2> /dev/null || true
    if [ -n "$(ls -A "$work/artifacts" 2> /dev/null)" ]; then
      keep=$(mktemp -d /tmp/floe-browser-test.XXXXXX)
      cp -r "$work/artifacts/." "$keep/" && echo "browser test: screenshots kept in $keep" >&2
    fi
  fi
  rm -rf "$work"
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for i in $(seq 0 $((nodes - 1))); do
  for port in $((base_port + i)) $((base_port + 1000 + i)); do
    if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; then
      fail "port $port is already in use (another devnet running?)"
    fi
  done
done
"$floe" devnet --nodes "$nodes" --base-port "$base_port" --data-dir "$work/data" > "$work/devnet.out" 2>&1 &
devnet=$!
for _ in $(seq 1 300); do
  grep -q "Ctrl-C stops" "$work/devnet.out" 2> /dev/null && break
  kill -0 "$devnet" 2> /dev/null || fail "floe devnet exited early"
  sleep 0.2
done
grep -q "Ctrl-C stops" "$work/devnet.out" || fail "floe devnet did not start within 60 s"
mapfile -t node_pids < <(pgrep -P "$devnet" || true)
gateways=()
for i in $(seq 0 $((nodes - 1))); do gateways+=("http://127.0.0.1:$((base_port + 1000 + i))"); done

# JSON field from stdin, by a dotted path with alternatives: json 'a.b|c.d'.
json() {
  node -e '
    let s = ""; process.stdin.on("data", (d) => s += d).on("end", () => {
      let j; try { j = JSON.parse(s); } catch { process.exit(1); }
      for (const path of process.argv[1].split("|")) {
        const v = path.split(".").reduce((o, k) => o == null ? undefined : o[k], j);
        if (v !== undefined && v !== null) { console.log(typeof v === "object" ? JSON.stringify(v) : String(v)); return; }
      }
      process.exit(1);
    });' "$1"
}

# Wait until every node knows the other three.
for gateway in "${gateways[@]}"; do
  known=
  for _ in $(seq 1 150); do
    known=$(curl -sf --max-time 2 "$gateway/v1/node/status" | json knownPeers || true)
    [ "${known:-0}" -ge $((nodes - 1)) ] && break
    sleep 0.2
  done
  [ "${known:-0}" -ge $((nodes - 1)) ] || fail "$gateway knows ${known:-no} peers after 30 s, not $((nodes - 1))"
done
echo "browser test: devnet of $nodes nodes up, gateways ${gateways[*]}"

# 3. The blobs, stored with curl through different nodes.
put() { # put FILE CONTENT-TYPE GATEWAY -> blob ID
  local answer id
  answer=$(curl -sS -f --max-time 60 -X PUT -H "Content-Type: $2" --data-binary "@$1" "$3/v1/blobs") \
    || fail "PUT $1 to $3 failed"
  id=$(printf '%s' "$answer" | json 'newlyCreated.blobObject.blobId|alreadyCertified.blobId') \
    || fail "PUT $1 to $3 answered without a blob ID: $answer"
  [[ "$id" =~ ^[A-Za-z0-9_-]{43}$ ]] || fail "PUT $1 to $3 answered a malformed blob ID: $id"
  printf '%s' "$id"
}
printf 'Hello from floe'"'"'s browser test: ünïcödé ✓ — 0123456789 abcdefghijklmnopqrstuvwxyz\n' > "$work/text.txt"
text_id=$(put "$work/text.txt" 'text/plain; charset=utf-8' "${gateways[0]}")
clip_id=$(put "$dir/clip.webm" video/webm "${gateways[1]}")
echo "browser test: stored text $text_id ($(wc -c < "$work/text.txt") bytes) and clip $clip_id ($(wc -c < "$dir/clip.webm") bytes)"
# Both read back whole through other nodes before a browser is involved.
curl -sf --max-time 30 "${gateways[2]}/v1/blobs/$text_id" | cmp -s - "$work/text.txt" \
  || fail "the text blob did not read back byte-identical from ${gateways[2]}"
curl -sf --max-time 30 "${gateways[3]}/v1/blobs/$clip_id" | cmp -s - "$dir/clip.webm" \
  || fail "the clip did not read back byte-identical from ${gateways[3]}"
echo "browser test: both blobs read back byte-identical with curl"

# A site (issue 19): pages, a stylesheet, a script, an image and the clip, published through node 0 with
# `floe site publish`; the browser loads it from node 3, which did not publish it.
mkdir -p "$work/site/media"
cat > "$work/site/index.html" << 'HTML'
<!doctype html>
<html><head><meta charset="utf-8"><title>floe site</title><link rel="stylesheet" href="style.css">
<link rel="icon" href="data:,"></head>
<body><h1>A site from the swarm</h1><img id="logo" src="logo.svg" alt="logo">
<video id="clip" src="media/clip.webm" muted playsinline preload="auto"></video>
<script src="app.js"></script></body></html>
HTML
printf 'h1 { color: rgb(0, 128, 128); }\n' > "$work/site/style.css"
printf 'document.body.dataset.script = "ran";\n' > "$work/site/app.js"
printf '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20" fill="teal"/></svg>\n' \
  > "$work/site/logo.svg"
printf '<!doctype html><p id="missing">not here</p>\n' > "$work/site/404.html"
printf '{"notFound": "/404.html"}\n' > "$work/site/floe-site.json"
cp "$dir/clip.webm" "$work/site/media/clip.webm"
# The verifier (verifier/, WebAssembly) and a page that reads a blob with it, published with the site.
if ! rustup target list --installed 2> /dev/null | grep -qx wasm32-unknown-unknown; then
  echo "browser test: adding the wasm32-unknown-unknown target with rustup" >&2
  rustup target add wasm32-unknown-unknown > /dev/null || fail "rustup target add wasm32-unknown-unknown failed"
fi
cargo build --quiet --release -p floe-verifier --target wasm32-unknown-unknown \
  || fail "building floe-verifier for wasm32-unknown-unknown failed"
cp target/wasm32-unknown-unknown/release/floe_verifier.wasm verifier/js/floe-verify.mjs "$dir/verify.html" \
  "$work/site/"
clip_sha256=$(sha256sum "$dir/clip.webm" | cut -d' ' -f1)
# 16 MiB of random bytes, for the verifier's throughput in the browser.
head -c $((16 << 20)) /dev/urandom > "$work/big.bin"
big_id=$(put "$work/big.bin" application/octet-stream "${gateways[1]}")
big_sha256=$(sha256sum "$work/big.bin" | cut -d' ' -f1)
published=$("$floe" --json site publish "$work/site" --name-key "$work/site.key" --gateway "${gateways[0]}" \
  2> "$work/site.err") \
  || fail "floe site publish failed: $(cat "$work/site.err") $published"
site_id=$(printf '%s' "$published" | json siteId) || fail "floe site publish printed no site ID: $published"
site_files=$(printf '%s' "$published" | json files)
# The site's own origin on node 3 (the label is node 0's answer; any node serves it).
site_origin=$(printf '%s' "$published" | json originUrl | sed "s/:$((base_port + 1000))\//:$((base_port + 1003))\//")
# The name's own origin on node 3 too.
name_origin=$(printf '%s' "$published" | json name.originUrl | sed "s/:$((base_port + 1000))\//:$((base_port + 1003))\//") \
  || fail "floe site publish --name-key printed no name: $published"
echo "browser test: published site $site_id ($site_files files), own origin $site_origin, name origin $name_origin"

# 4. The browser checks; test.mjs serves its other-origin page itself and limits its own time (110 s). In the
# background and waited for, so that Ctrl-C or a TERM reaches on_exit at once.
args=()
for gateway in "${gateways[@]}"; do args+=(--gateway "$gateway"); done
# IDs go as --opt=value: a base64url ID may start with "-", which node's parseArgs takes for an option.
timeout -k 5 150 node "$dir/test.mjs" "${args[@]}" --text-id="$text_id" --text-file "$work/text.txt" \
  --clip-id="$clip_id" --site-id="$site_id" --site-origin "$site_origin" --clip-sha256 "$clip_sha256" --big-id="$big_id" --big-sha256 "$big_sha256" --artifacts "$work/artifacts" \
  --name-origin "$name_origin" --name-key "$work/site.key" --site-dir "$work/site" --floe "$floe" &
tester=$!
wait "$tester"
