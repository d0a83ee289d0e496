#!/usr/bin/env bash
# The GPU check in one go, for a machine with a CUDA device; under 8 minutes (the sum of the section
# limits below, 465 s, plus the preflight).
#
#   bash benchmarks/gpu_check.sh [REPORT]        (default REPORT: gpu_check_report.txt)
#
# Sections, each under its own time limit (seconds, overridable by the environment variable named):
#   1. preflight: torch sees a CUDA device, this inspo_ext build has the CUDA backend and its own runtime
#      reaches the device (build_info()["cuda_device_available"]); else it stops at once, exit code 2,
#      saying which and how to fix it;
#   2. capture (GPU_CHECK_CAPTURE_S=40), alone and first: tests/test_ops_cuda_capture.py, every op captured
#      into a CUDA graph and replayed against its eager call, and the deferred status check after a replay;
#   3. compute-sanitizer (GPU_CHECK_SANITIZER_S=35 per tool): memcheck, racecheck and initcheck over
#      benchmarks/sanitizer_cases.py (one small call of every op, forward and backward, and resample's
#      error path);
#   4. tests (GPU_CHECK_TESTS_S=50): tests/test_ops_cuda.py, every op on CUDA against the reference and the
#      CPU backend;
#   5. large sizes (GPU_CHECK_LARGE_S=60): tests/test_ops_cuda_large.py, every op at B = 262,144 against
#      the CPU backend;
#   6. tests marked cuda (GPU_CHECK_MARKED_S=50): the rest of them in tests/ (among them the compiled step
#      replayed as a CUDA graph against the eager step, tests/test_train_compile.py);
#   7. op benchmarks (GPU_CHECK_OPS_S=45): `inspo bench --device cuda --sections ops` at B = 256k, N = 8,
#      A = 16, ours vs eager vs torch.compile (CUDA events);
#   8. iteration (GPU_CHECK_ITERATION_S=70, per shape of GPU_CHECK_ITERATION_SHAPES="2s3z"):
#      benchmarks/iteration_interleaved.py --device cuda, the fused InSPO iteration: plain PyTorch, our
#      ops eager, our compiled step replayed as a CUDA graph (medians of interleaved rounds);
#   9. the official OMIGA against ours (GPU_CHECK_PEER_S=45), only when OMIGA_CHECKOUT names a checkout of
#      the official code: benchmarks/peer_omiga.py --device cuda.
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
if not info["cuda_device_available"]:
    print("gpu_check: error: inspo_ext's CUDA runtime sees no device although torch does "
          f"({info.get('cuda_device_error')}); the driver is older than the CUDA {info['cuda_version']} the "
          "extension was built with: update the driver or rebuild with an older CUDA toolkit")
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

# 2. capture first, alone: an op that synchronizes inside a CUDA graph capture fails here.
section "capture" "${GPU_CHECK_CAPTURE_S:-40}" \
  "$PY" -m pytest -q -x -p no:cacheprovider tests/test_ops_cuda_capture.py

# 3. compute-sanitizer over one small call of every op.
SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
for tool in memcheck racecheck initcheck; do
  if [ -n "$SANITIZER" ]; then
    section "sanitizer $tool" "${GPU_CHECK_SANITIZER_S:-35}" \
      "$SANITIZER" --tool "$tool" --error-exitcode 1 --target-processes all "$PY" benchmarks/sanitizer_cases.py
  else
    log "==== sanitizer $tool: FAIL (compute-sanitizer not found on the PATH or in /usr/local/cuda/bin)"
    SUMMARY+=("sanitizer $tool: FAIL (compute-sanitizer not found)")
    STATUS=1
  fi
done

# 4. to 6. the CUDA tests.
section "cuda op tests" "${GPU_CHECK_TESTS_S:-50}" \
  "$PY" -m pytest -q -x -p no:cacheprovider tests/test_ops_cuda.py
section "large sizes" "${GPU_CHECK_LARGE_S:-60}" \
  "$PY" -m pytest -q -x -p no:cacheprovider tests/test_ops_cuda_large.py
section "tests marked cuda" "${GPU_CHECK_MARKED_S:-50}" \
  bash -c "'$PY' -m pytest -q -p no:cacheprovider -m cuda tests --ignore=tests/test_ops_cuda.py \
    --ignore=tests/test_ops_cuda_large.py --ignore=tests/test_ops_cuda_capture.py; rc=\$?; [ \$rc -eq 5 ] && exit 0 || exit \$rc"

# 7. the CUDA op benchmark subset.
section "op benchmarks (cuda)" "${GPU_CHECK_OPS_S:-45}" \
  "$PY" -m inspo bench --device cuda --sections ops --batch 262144 --agents 8 --actions 16 \
  --impls ours,eager,compiled --modes fwd,full --no-memory --out-dir "$OUT/ops"
[ -f "$OUT/ops/bench.md" ] && { log ""; log "---- op benchmark table (bench.md)"; tee -a "$REPORT" < "$OUT/ops/bench.md"; }

# 8. the training iteration on CUDA: the compiled step replayed as a CUDA graph.
for shape in ${GPU_CHECK_ITERATION_SHAPES:-2s3z}; do
  section "iteration $shape fused (cuda)" "${GPU_CHECK_ITERATION_S:-70}" \
    "$PY" benchmarks/iteration_interleaved.py --device cuda --shape "$shape" --case fused --rounds 20 \
    --variants eager,ours,ours+compile
done

# 9. the official OMIGA update against ours, when a checkout of it is given.
if [ -n "${OMIGA_CHECKOUT:-}" ]; then
  section "official OMIGA vs ours (cuda)" "${GPU_CHECK_PEER_S:-45}" \
    "$PY" benchmarks/peer_omiga.py --omiga "$OMIGA_CHECKOUT" --device cuda --rounds 10
else
  log ""
  log "==== official OMIGA vs ours: skipped (set OMIGA_CHECKOUT to a checkout of the official OMIGA code)"
fi

log ""
log "==== summary"
for line in "${SUMMARY[@]}"; do log "  $line"; done
log "report: $REPORT (benchmark files: $OUT)"
exit "$STATUS"
