#!/usr/bin/env bash
# Builds floe and shows what it does today: a file becomes 12 verifiable slivers, two thirds of them are
# deleted, and the file comes back byte for byte from the remaining third. Cleans up after itself.
# FLOE_PROFILE=dev uses a debug build (CI has one already).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/floe-binary.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -c 3000000 /dev/urandom > "$work/blob"
echo "== floe blob-id (3 MB of random bytes, 12 slivers)"
"$floe" blob-id "$work/blob"
echo "== floe slivers encode"
id=$("$floe" slivers encode "$work/blob" --out "$work/slivers")
ls "$work/slivers" | tr '\n' ' '; echo
echo "== delete two thirds of the slivers (0-7), corrupt one byte of sliver 8"
rm "$work"/slivers/sliver-000[0-7].floe "$work/slivers/blob.meta"
printf '\xff' | dd of="$work/slivers/sliver-0008.floe" bs=1 seek=1000 conv=notrunc status=none
echo "== floe slivers decode"
if "$floe" slivers decode "$work/slivers" --blob-id="$id" --out "$work/rebuilt"; then
  echo "demo: decoding from a corrupt sliver set should have failed" >&2; exit 1
fi
[ ! -e "$work/rebuilt" ] || { echo "demo: a failed decode left output behind" >&2; exit 1; }
echo "== as expected: with one of the last four corrupt, only 3 of the 4 needed slivers remain, and no output"
echo "== restore sliver 8 by re-encoding into a fresh directory, keep only slivers 8-11, decode again"
rm -rf "$work/slivers"
"$floe" slivers encode "$work/blob" --out "$work/slivers" > /dev/null
rm "$work"/slivers/sliver-000[0-7].floe "$work/slivers/blob.meta"
"$floe" slivers decode "$work/slivers" --blob-id="$id" --out "$work/rebuilt"
cmp "$work/blob" "$work/rebuilt" && echo "== rebuilt file is byte-identical"
