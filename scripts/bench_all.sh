#!/usr/bin/env bash
# Every benchmark in turn (what `make bench` runs). Tables go to stdout, JSON to outputs/bench/.
#   BENCH_DEVICE=cuda make bench   # on a GPU
#   BENCH_QUICK=1 make bench       # test-sized models: minutes on a CPU, checks the commands run
# Full-size runs on a 2-core CPU take well over half an hour (SAM's decoder dominates).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=outputs/bench
DEVICE="${BENCH_DEVICE:-cpu}"
mkdir -p "$OUT"
run() { printf '\n\033[1m== %s\033[0m\n' "$*"; "$@"; }
if [ "${BENCH_QUICK:-0}" = "1" ]; then
  SAM=(--model sam_tiny_test --points-per-side 8 --repeats 1 --warmup 0)
  CLASSIFY=(--quick)
  RELATIONS=(--repeats 2)
  E2E=(--quick --images astronaut --repeats 1 --burst-seconds 10 --max-side 160)
  TRACKING=(--frames 10)
else
  SAM=(); CLASSIFY=(); RELATIONS=(); E2E=(); TRACKING=()
fi
run pn-bench-sam --device "$DEVICE" "${SAM[@]}" --out "$OUT/sam.json"
run pn-bench-classify --device "$DEVICE" "${CLASSIFY[@]}" --out "$OUT/classify.json"
run pn-bench-relations --device "$DEVICE" "${RELATIONS[@]}" --out "$OUT/relations.json"
run pn-bench-e2e --device "$DEVICE" "${E2E[@]}" --out "$OUT/e2e.json"
run pn-bench-tracking "${TRACKING[@]}" --out "$OUT/tracking.json"
printf '\nJSON results: %s\n' "$OUT"
