#!/usr/bin/env bash
# FD part of the GPU check (benchmarks/gpu/check.sh runs every part_*.sh OUTDIR in order).
# 1. the FD GPU tests; 2. compute-sanitizer memcheck and racecheck on a small FD driver;
# 3. the FD GPU benchmarks (CUDA-event medians) into OUTDIR/frechet_gpu.md.
# Appends its lines to OUTDIR/summary.md; exits non-zero if any step fails. Without a
# usable CUDA device it says so, writes one line, and exits 0 (nothing to check here).
set -uo pipefail
cd "$(dirname "$0")/../.."
. benchmarks/gpu/common.sh "${1:?usage: part_20_frechet.sh OUTDIR}" "Fréchet distance (part_20_frechet.sh)" FD

step "FD GPU tests" "$OUT/frechet_tests.log" \
  "$PY" -m pytest -q -rs -p no:cacheprovider -m gpu tests/frechet/test_frechet_polar.py

sanitize "FD driver" "$OUT/frechet" "$PY" benchmarks/gpu/fd_sanitize.py

step "FD GPU benchmarks" "$OUT/frechet_bench.log" \
  env UMSYNTH_GPU_OUT="$OUT" "$PY" -m pytest -q -p no:cacheprovider benchmarks/gpu/test_bench_frechet_gpu.py
if [ -f "$OUT/frechet_gpu.md" ]; then
  echo >> "$SUM"
  tail -n +3 "$OUT/frechet_gpu.md" >> "$SUM"
fi
exit $fail
