#!/usr/bin/env bash
# floe-simnet scale benchmark: NODES nodes, BLOBS blobs of 64 KiB–1 MiB, DAYS simulated days with 10 % churn a day
# (Weibull sessions, shape 0.6, mean 10 days; Poisson arrivals keep the swarm at size), eager repair after a
# 15-minute grace period. Release build; reports wall time, peak RSS, events and the run's headline numbers.
#
#   scripts/bench-simnet.sh [NODES] [BLOBS] [DAYS] [SHARDS] [MIN_LOST] [READS_PER_S]
#       default 1000 nodes, 10000 blobs, 1 day, n default, eager repair (MIN_LOST 1; more is lazy repair),
#       1 read a second across the swarm
# The issue's target point is `scripts/bench-simnet.sh 10000 100000 30`.
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${1:-1000}
blobs=${2:-10000}
days=${3:-1}
shards=${4:-}
min_lost=${5:-1}
reads=${6:-1.0}
cargo build --release --quiet -p floe-simnet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/scale.toml" "$nodes" "$blobs" "$days" "$shards" "$min_lost" "$reads" <<'PY'
import sys
path, nodes, blobs, days, shards = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
min_lost = int(sys.argv[6])
reads = float(sys.argv[7])
day = 86_400_000
# Weibull(shape 0.6): mean = scale × Γ(1 + 1/0.6) = scale × 1.5046; a 10-day mean gives 10 % departures a day.
scale = 10 * day / 1.5046
arrivals = nodes * 0.1 / 24
open(path, "w").write(f'''name = "scale-bench"
description = "{nodes} nodes, {blobs} blobs, {days} days, 10 % churn a day"
duration_ms = {int(days * day)}
sample_interval_ms = {day // 24}

[nodes]
count = {nodes}

[workload]
blobs = {blobs}
write_phase_ms = 3_600_000
read_rate_per_s = {reads}
{f"shards = {shards}" if shards else ""}

[repair]
grace_ms = 900_000
min_lost = {min_lost}

[churn]
start_ms = 3_600_000
session_shape = 0.6
session_scale_ms = {scale:.1f}
arrivals_per_hour = {arrivals:.3f}
''')
PY
/usr/bin/time -v target/release/floe-simnet run "$work/scale.toml" --seed 1 --out "$work/out" --quiet \
    2> "$work/time.txt" | tail -1
grep -E "Elapsed|Maximum resident" "$work/time.txt"
python3 -c "import json,sys; s=json.load(open('$work/out/summary.json')); print({k: s[k] for k in ['events','shards','nodes_total','blobs_certified','availability_min','durability_losses','repairs_run','slivers_rebuilt','duplicate_rebuilds','repair_bytes'] if k in s})"
