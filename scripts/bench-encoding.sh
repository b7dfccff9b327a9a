#!/usr/bin/env bash
# Runs the encoding benchmarks and prints a table of floe against bare reed-solomon-simd and memcpy,
# all measured in this run on this machine. Medians, MB/s of blob bytes (1 MB = 10^6 bytes).
#
#   scripts/bench-encoding.sh                      # everything (about 15 minutes on 2 cores)
#   FLOE_BENCH_N=100 FLOE_BENCH_SIZES=1M scripts/bench-encoding.sh   # a part
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf target/criterion
cargo bench -p floe-protocol --bench encoding -- --noplot >&2
python3 - <<'PY'
import glob, json, os
rows = {}
for path in glob.glob("target/criterion/*/*/new/estimates.json"):
    base = os.path.dirname(path)
    bench = json.load(open(os.path.join(base, "benchmark.json")))
    est = json.load(open(path))
    nbytes = bench["throughput"]["Bytes"]
    mbps = nbytes / (est["median"]["point_estimate"] / 1e9) / 1e6
    rows[(bench["group_id"], bench["value_str"])] = mbps

def get(group, key):
    return rows.get((group, key))

def fmt(v):
    return "–" if v is None else f"{v:,.0f}"

def ratio(a, b):
    return "–" if a is None or b is None else f"{a / b:.0%}"

sizes = ["64K", "1M", "64M"]
print(f"cores: {os.cpu_count()}; {os.uname().machine}")
print()
print("| blob | memcpy | BLAKE3 (one thread) |")
print("|---|---|---|")
for size in sizes:
    if get("memcpy", size) is not None:
        print(f"| {size} | {fmt(get('memcpy', size))} | {fmt(get('blake3', size))} |")
print()
print("| encoding | n | blob | bare rs-simd encode | encode+commit (1 thread) | ratio | encode+commit (2 threads) | ratio | verify k slivers |")
print("|---|---|---|---|---|---|---|---|---|")
for enc in ["rs-simd", "novelpoly"]:
    for n in [12, 100, 300, 1000]:
        for size in sizes:
            key = f"{n}/{size}"
            ek = f"{enc}/{key}"
            e1 = get("encode+commit", ek)
            if e1 is None:
                continue
            bare = get("bare-rs-simd-encode", key)
            e2 = get("encode+commit-2t", ek)
            print(f"| {enc} | {n} | {size} | {fmt(bare)} | {fmt(e1)} | {ratio(e1, bare)} | {fmt(e2)} | {ratio(e2, bare)} | {fmt(get('verify', ek))} |")
print()
print("| encoding | n | blob | memcpy | systematic read (verified slivers) | ratio | systematic read + re-encode check | ratio |")
print("|---|---|---|---|---|---|---|---|")
for enc in ["rs-simd", "novelpoly"]:
    for n in [12, 100, 300, 1000]:
        for size in sizes:
            ek = f"{enc}/{n}/{size}"
            s = get("systematic-read", ek)
            if s is None:
                continue
            m = get("memcpy", size)
            sc = get("systematic-read-checked", ek)
            print(f"| {enc} | {n} | {size} | {fmt(m)} | {fmt(s)} | {ratio(s, m)} | {fmt(sc)} | {ratio(sc, m)} |")
print()
print("| encoding | n | blob | bare rs-simd decode | worst-case decode, verified + checked (1 thread) | ratio | (2 threads) | ratio |")
print("|---|---|---|---|---|---|---|---|")
for enc in ["rs-simd", "novelpoly"]:
    for n in [12, 100, 300, 1000]:
        for size in sizes:
            key = f"{n}/{size}"
            ek = f"{enc}/{key}"
            d1 = get("worst-case-decode", ek)
            if d1 is None:
                continue
            bare = get("bare-rs-simd-decode", key)
            d2 = get("worst-case-decode-2t", ek)
            print(f"| {enc} | {n} | {size} | {fmt(bare)} | {fmt(d1)} | {ratio(d1, bare)} | {fmt(d2)} | {ratio(d2, bare)} |")
PY
