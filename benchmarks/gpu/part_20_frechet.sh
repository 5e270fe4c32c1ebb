#!/usr/bin/env bash
# FD part of the GPU check (benchmarks/gpu/check.sh runs every part_*.sh OUTDIR in order).
# 1. the FD GPU tests; 2. compute-sanitizer memcheck and racecheck on a small FD driver;
# 3. the FD GPU benchmarks (CUDA-event medians) into OUTDIR/frechet_gpu.md.
# Appends its lines to OUTDIR/summary.md; exits non-zero if any step fails. Without a
# usable CUDA device it says so, writes one line, and exits 0 (nothing to check here).
set -uo pipefail
OUT=${1:?usage: part_20_frechet.sh OUTDIR}
cd "$(dirname "$0")/../.."
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
SUM="$OUT/summary.md"
echo "## Fréchet distance (part_20_frechet.sh)" >> "$SUM"

reason=$("$PY" -c "from umsynth.kernels.config import cuda_status; ok, why = cuda_status(); print(why); raise SystemExit(0 if ok else 3)" 2>&1)
if [ $? -ne 0 ]; then
  echo "FD GPU check skipped: no usable CUDA device ($reason)."
  echo "- skipped: no usable CUDA device ($reason)" >> "$SUM"
  exit 0
fi

fail=0
step() {  # step NAME LOGFILE COMMAND...: run, record PASS/FAIL with the log's last line
  local name=$1 log=$2; shift 2
  local t0=$SECONDS
  "$@" > "$log" 2>&1
  local rc=$?
  local last; last=$(grep -v '^\s*$' "$log" | tail -n 1)
  if [ $rc -eq 0 ]; then
    echo "- PASS $name ($((SECONDS - t0)) s): $last" >> "$SUM"
  else
    echo "- FAIL $name (exit $rc, $((SECONDS - t0)) s): $last; see $(basename "$log")" >> "$SUM"
    fail=1
  fi
  echo "$name: exit $rc"
}

step "FD GPU tests" "$OUT/frechet_tests.log" \
  "$PY" -m pytest -q -rs -p no:cacheprovider -m gpu tests/frechet/test_frechet_polar.py

SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ -x "$SAN" ]; then
  for tool in memcheck racecheck; do
    step "compute-sanitizer $tool (FD driver)" "$OUT/frechet_$tool.log" \
      "$SAN" --tool "$tool" --error-exitcode 9 "$PY" benchmarks/gpu/fd_sanitize.py
  done
else
  echo "- FAIL compute-sanitizer: not found (PATH or /usr/local/cuda/bin)" >> "$SUM"
  fail=1
fi

step "FD GPU benchmarks" "$OUT/frechet_bench.log" \
  env UMSYNTH_GPU_OUT="$OUT" "$PY" -m pytest -q -p no:cacheprovider benchmarks/gpu/test_bench_frechet_gpu.py
if [ -f "$OUT/frechet_gpu.md" ]; then
  echo >> "$SUM"
  tail -n +3 "$OUT/frechet_gpu.md" >> "$SUM"
fi
exit $fail
