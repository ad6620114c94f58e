#!/usr/bin/env bash
# Every benchmark in turn (what `make bench` runs). Tables go to stdout, JSON to outputs/bench/.
# Extra arguments for all of them: BENCH_DEVICE=cuda make bench
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=outputs/bench
DEVICE="${BENCH_DEVICE:-cpu}"
mkdir -p "$OUT"
run() { printf '\n\033[1m== %s\033[0m\n' "$*"; "$@"; }
run pn-bench-sam --device "$DEVICE" --out "$OUT/sam.json"
run pn-bench-classify --device "$DEVICE" --out "$OUT/classify.json"
run pn-bench-relations --device "$DEVICE" --out "$OUT/relations.json"
run pn-bench-e2e --device "$DEVICE" --out "$OUT/e2e.json"
printf '\nJSON results: %s\n' "$OUT"
