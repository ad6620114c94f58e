#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU, PyTorch with CUDA and onnxruntime installed and
# no network (no ROS needed):
#
#   scripts/device_check.sh OUT_DIR [--cpu]
#
# 1. installs what is missing of the project's other dependencies from the wheels that
#    scripts/device_wheels.sh prepared ($PN_DEVICE_WHEELS, default outputs/device_wheels), into
#    a virtual environment OUT_DIR/venv that sees the machine's packages;
# 2. runs `pytest -m gpu` (tests/test_gpu_*.py; peak GPU memory per frame in gpu_tests.jsonl);
# 3. pn-bench-sam (encoder, decoder, our AMG against the official generator) in fp32 and bf16;
# 4. the core end-to-end benchmark (`pn-bench-host --pipeline`: scene graphs per second at
#    640x480 with vit_t, peak RSS and GPU memory) in fp32 and bf16, and pn-bench-host's host
#    steps with masks and crops on the GPU;
# 5. writes OUT_DIR/summary.json (every step: command, exit code, seconds, its JSON) and
#    OUT_DIR/logs/*.log. Exit code 0 when every step passed.
#
# --cpu runs the same steps on the CPU with test-size models (tests/test_host_device_check.py
# runs it that way, so the script cannot rot). Budget on an H100-class GPU: about 8 minutes.
set -uo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 OUT_DIR [--cpu]" >&2
  exit 2
fi
OUT="$(mkdir -p "$1" && cd "$1" && pwd)"
MODE=cuda
[ "${2:-}" = "--cpu" ] && MODE=cpu
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEELS="${PN_DEVICE_WHEELS:-$ROOT/outputs/device_wheels}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT/logs"
: >"$OUT/steps.jsonl"
: >"$OUT/gpu_tests.jsonl"
export PYTHONPATH="$ROOT/perception_nodes${PYTHONPATH:+:$PYTHONPATH}"
export PERCEPTION_NODES_CACHE="${PERCEPTION_NODES_CACHE:-$OUT/cache}"  # generated weights
export PN_GPU_REPORT="$OUT/gpu_tests.jsonl"

# ------------------------------------------------------------------ environment
# found without importing them (importing torch and open_clip costs seconds of CPU; the steps
# below import them anyway and report a broken install)
if ! "$PY" -c "
import importlib.util, sys
sys.exit(any(importlib.util.find_spec(m) is None
             for m in ('segment_anything', 'open_clip', 'pycocotools', 'mobile_sam')))
" 2>/dev/null; then
  if [ ! -d "$WHEELS" ]; then
    echo "missing Python packages and no wheels in $WHEELS (run scripts/device_wheels.sh on a connected machine)" >&2
    exit 2
  fi
  "$PY" -m venv --system-site-packages "$OUT/venv" || exit 2
  PY="$OUT/venv/bin/python"
  "$PY" -m pip install --no-index --no-deps --quiet "$WHEELS"/*.whl >"$OUT/logs/install.log" 2>&1 || {
    cat "$OUT/logs/install.log" >&2
    exit 2
  }
fi

step() {  # step NAME JSON_OUT TIMEOUT_S CMD...: run, log, record
  local name="$1" json="$2" limit="$3"
  shift 3
  local t0 rc
  t0=$(date +%s.%N)
  echo "== $name: $*"
  timeout "$limit" "$@" >"$OUT/logs/$name.log" 2>&1
  rc=$?
  "$PY" - "$name" "$rc" "$t0" "$json" "$*" >>"$OUT/steps.jsonl" <<'EOF'
import json, sys, time
name, rc, t0, path, cmd = sys.argv[1:]
print(json.dumps({"step": name, "rc": int(rc), "seconds": round(time.time() - float(t0), 1),
                  "json": path or None, "command": cmd}))
EOF
  echo "   rc=$rc ($(tail -n1 "$OUT/logs/$name.log" | cut -c1-160))"
}

if [ "$MODE" = cuda ]; then
  SAM_ARGS=(--model vit_t --points-per-side 32 --images astronaut coffee --repeats 3)
  PIPE_ARGS=(--backend torch --repeats 3)
  HOST_ARGS=(--repeats 5)
  PRECISIONS=(fp32 bf16)
  LIMIT_TESTS=240 LIMIT_BENCH=150
else  # test-size models, one photo, fp32 only, no official generator: plumbing, not numbers
  SAM_ARGS=(--model sam_tiny_test --points-per-side 4 --images astronaut --longest 128 --repeats 1
            --warmup 0 --no-official)
  PIPE_ARGS=(--backend torch --quick --photos astronaut --max-side 128 --repeats 1)
  HOST_ARGS=(--sizes 160x120 --regions 10 --repeats 1)
  PRECISIONS=(fp32)
  LIMIT_TESTS=300 LIMIT_BENCH=300  # a shared 2-core machine: limits catch hangs only
fi

step env "$OUT/env.json" 60 "$PY" -c "
import json, torch, sys
info = {'python': sys.version.split()[0], 'torch': torch.__version__, 'cuda': torch.cuda.is_available(),
        'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
try:
    import onnxruntime as ort
    info['onnxruntime'] = ort.__version__
    info['ort_providers'] = ort.get_available_providers()
except ImportError:
    info['onnxruntime'] = None
json.dump(info, open('$OUT/env.json', 'w'))
print(info)
if '$MODE' == 'cuda' and not info['cuda']:
    sys.exit('CUDA is not available to PyTorch')
"
step gpu_tests "$OUT/gpu_tests.jsonl" "$LIMIT_TESTS" env PN_TEST_GPU=1 "$PY" -m pytest -m gpu \
  "$ROOT"/tests/test_gpu_*.py -q -s -p no:cacheprovider --junitxml="$OUT/gpu_tests.xml"
for precision in "${PRECISIONS[@]}"; do
  step "bench_sam_$precision" "$OUT/bench_sam_$precision.json" "$LIMIT_BENCH" "$PY" -m \
    perception_nodes.tools.bench_sam --device "$MODE" --dtype "$precision" "${SAM_ARGS[@]}" \
    --out "$OUT/bench_sam_$precision.json"
  step "pipeline_$precision" "$OUT/pipeline_$precision.json" "$LIMIT_BENCH" "$PY" -m \
    perception_nodes.tools.bench_host --pipeline --device "$MODE" --precision "$precision" \
    "${PIPE_ARGS[@]}" --out "$OUT/pipeline_$precision.json"
done
step bench_host "$OUT/bench_host.json" "$LIMIT_BENCH" "$PY" -m perception_nodes.tools.bench_host \
  --device "$MODE" "${HOST_ARGS[@]}" --out "$OUT/bench_host.json"

# ------------------------------------------------------------------ summary
"$PY" - "$OUT" "$MODE" <<'EOF'
import json, sys
from pathlib import Path

out, mode = Path(sys.argv[1]), sys.argv[2]
steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line]
for s in steps:
    path = Path(s["json"]) if s["json"] else None
    if path and path.is_file() and path.suffix == ".json":
        s["result"] = json.loads(path.read_text())
gpu_tests = [json.loads(line) for line in (out / "gpu_tests.jsonl").read_text().splitlines() if line]
summary = {"mode": mode, "ok": all(s["rc"] == 0 for s in steps), "steps": steps,
           "gpu_tests": gpu_tests, "logs": str(out / "logs")}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(f"{'all steps passed' if summary['ok'] else 'FAILED: ' + ', '.join(s['step'] for s in steps if s['rc'])}"
      f"; summary: {out / 'summary.json'}")
sys.exit(0 if summary["ok"] else 1)
EOF
