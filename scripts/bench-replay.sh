#!/usr/bin/env bash
# The replay benchmark (issue 15): a generated 30-day trace of 50,000 builds over the four
# templates of scripts/bench/replay-month.toml, replayed with builtin:default by the release
# binary. Prints the wall and CPU time, the peak RSS and the load; the figures go to
# docs/benchmarks.md ("What-if replay").
#
#   scripts/bench-replay.sh            # one policy
#   scripts/bench-replay.sh 2          # the same policy twice, in parallel (two threads)
set -euo pipefail
cd "$(dirname "$0")/.."
policies=${1:-1}
target=${CARGO_TARGET_DIR:-$HOME/.cache/ecsp-release-target}
CARGO_TARGET_DIR=$target cargo build --release -p ecs-provisioner --bin ecs-provisioner
bin=$target/release/ecs-provisioner
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" policy trace generate --shape diurnal --days 30 --builds 50000 --seed 1 \
    --label linux=5 --label docker=3 --label big=1 --label windows=1 -o "$work/month.jsonl"
args=()
for _ in $(seq "$policies"); do args+=(--policy builtin:default); done
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f "replay: %e s wall, %U s user, %S s system, peak RSS %M KiB" \
    "$bin" policy replay "$work/month.jsonl" -c scripts/bench/replay-month.toml "${args[@]}" --json \
    > "$work/report.json"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 -c 'import json,sys; [print(p["policy"], "cycles", p["cycles"], "launches", p["calls"]["launched"], "p95 wait ms", p["wait"]["p95_ms"]) for p in json.load(open(sys.argv[1]))["policies"]]' "$work/report.json"
