#!/usr/bin/env bash
# The GPU check in one go (issue 10 item 7), for a machine with a CUDA device; under 8 minutes (the sum of
# the section limits below, 470 s, plus the preflight).
#
#   bash benchmarks/gpu_check.sh [REPORT]        (default REPORT: gpu_check_report.txt)
#
# Sections, each under its own time limit (seconds, overridable by the environment variable named):
#   1. preflight: torch sees a CUDA device and this inspo_ext build has the CUDA backend (else it stops
#      at once, exit code 2, saying which and how to fix it);
#   2. tests (GPU_CHECK_TESTS_S=90 each): tests/test_ops_cuda.py (every op on CUDA against the reference
#      and the CPU backend) and every test marked `cuda` in tests/ (among them the compiled step replayed
#      as a CUDA graph against the eager step, tests/test_train_compile.py);
#   3. op benchmarks (GPU_CHECK_OPS_S=110): `inspo bench --device cuda --sections ops` at B = 16k and 256k,
#      N = 8, A = 16, ours vs eager vs torch.compile (CUDA events);
#   4. iteration (GPU_CHECK_ITERATION_S=180, per shape of GPU_CHECK_ITERATION_SHAPES="2s3z"; add 4k for
#      B = 4096, N = 8, A = 16 when time allows): benchmarks/iteration_interleaved.py --device cuda, the fused
#      InSPO iteration: plain PyTorch, our ops eager, our compiled step without and with its CUDA-graph
#      replay (medians of interleaved rounds, each call synchronized; two compiles per shape).
# Everything goes to REPORT (and the terminal), with each section's exit status and wall time and the
# benchmark tables; the exit code is 0 when every section passed, 1 otherwise.
# PYTHON (default: python) is the interpreter of the environment inspo is installed in.
set -uo pipefail

REPORT=${1:-gpu_check_report.txt}
PY=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
STATUS=0
SUMMARY=()

mkdir -p "$(dirname "$REPORT")" && : > "$REPORT" || { echo "gpu_check: error: cannot write the report $REPORT" >&2; exit 2; }
REPORT=$(cd "$(dirname "$REPORT")" && pwd)/$(basename "$REPORT")
cd "$ROOT" || exit 2

log() { echo "$@" | tee -a "$REPORT"; }

# section NAME LIMIT_S COMMAND...: run COMMAND under `timeout`, its output into the report.
section() {
  local name=$1 limit=$2
  shift 2
  log ""
  log "==== $name (limit ${limit}s): $*"
  local start=$SECONDS
  timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$REPORT"
  local rc=${PIPESTATUS[0]}
  local took=$((SECONDS - start))
  local verdict=PASS
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then verdict="TIMEOUT after ${limit}s"; STATUS=1
  elif [ "$rc" -ne 0 ]; then verdict="FAIL (exit $rc)"; STATUS=1; fi
  log "==== $name: $verdict in ${took}s"
  SUMMARY+=("$name: $verdict in ${took}s")
}

log "inspo GPU check, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

# 1. preflight: stop at once, with the reason, when there is nothing to check.
if ! "$PY" - >> "$REPORT" 2>&1 <<'EOF'
import sys

try:
    import torch
    import inspo_ext
except Exception as error:  # noqa: BLE001
    print(f"gpu_check: error: cannot import torch / inspo_ext ({error}); install inspo first")
    sys.exit(2)
info = inspo_ext.build_info()
print("torch", torch.__version__, "| torch CUDA", torch.version.cuda)
print("inspo_ext", {k: v for k, v in info.items() if k != "import_error"})
if not torch.cuda.is_available():
    print("gpu_check: error: no CUDA device: torch.cuda.is_available() is False "
          f"(torch CUDA build: {torch.version.cuda}; inspo_ext sees: {info.get('cuda_device_error')})")
    sys.exit(2)
if not info["cuda"]:
    print("gpu_check: error: this inspo_ext build has no CUDA backend; rebuild it with "
          "INSPO_CUDA=ON pip install --no-build-isolation -e . (nvcc on the PATH)")
    sys.exit(2)
print("device:", torch.cuda.get_device_name(0), "| capability", torch.cuda.get_device_capability(0))
EOF
then
  tail -n 1 "$REPORT" >&2
  echo "gpu_check: stopped before the checks; see $REPORT" >&2
  exit 2
fi
tail -n 3 "$REPORT"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
  --format=csv 2>&1 | tee -a "$REPORT"

# 2. the CUDA tests.
section "cuda op tests" "${GPU_CHECK_TESTS_S:-90}" \
  "$PY" -m pytest -q -x -p no:cacheprovider tests/test_ops_cuda.py
section "tests marked cuda" "${GPU_CHECK_TESTS_S:-90}" \
  bash -c "'$PY' -m pytest -q -p no:cacheprovider -m cuda tests --ignore=tests/test_ops_cuda.py; rc=\$?; [ \$rc -eq 5 ] && exit 0 || exit \$rc"

# 3. the CUDA op benchmark subset.
section "op benchmarks (cuda)" "${GPU_CHECK_OPS_S:-110}" \
  "$PY" -m inspo.bench --device cuda --sections ops --batch 16384,262144 --agents 8 --actions 16 \
  --impls ours,eager,compiled --modes fwd,full --no-memory --out-dir "$OUT/ops"
[ -f "$OUT/ops/bench.md" ] && { log ""; log "---- op benchmark table (bench.md)"; tee -a "$REPORT" < "$OUT/ops/bench.md"; }

# 4. the training iteration on CUDA: the compiled step with and without its CUDA-graph replay.
for shape in ${GPU_CHECK_ITERATION_SHAPES:-2s3z}; do
  section "iteration $shape fused (cuda)" "${GPU_CHECK_ITERATION_S:-180}" \
    "$PY" benchmarks/iteration_interleaved.py --device cuda --shape "$shape" --case fused --rounds 50 \
    --variants eager,ours,ours+compile/nograph,ours+compile
done

log ""
log "==== summary"
for line in "${SUMMARY[@]}"; do log "  $line"; done
log "report: $REPORT (benchmark files: $OUT)"
exit "$STATUS"
