#!/usr/bin/env bash
# Radiomics part of the GPU check (benchmarks/gpu/check.sh runs every part_*.sh OUTDIR in
# order). 1. the radiomics GPU tests; 2. compute-sanitizer memcheck and racecheck on a
# small radiomics driver; 3. GPU features against CPU features (FAIL above rel 1e-6) and a
# timing row, into OUTDIR/radiomics_gpu.md. Appends its lines to OUTDIR/summary.md; exits
# non-zero if any step fails. Without a usable CUDA device it says so and exits 0.
set -uo pipefail
cd "$(dirname "$0")/../.."
. benchmarks/gpu/common.sh "${1:?usage: part_30_radiomics.sh OUTDIR}" "Radiomics (part_30_radiomics.sh)" radiomics

step "radiomics GPU tests" "$OUT/radiomics_tests.log" \
  "$PY" -m pytest -q -rs -p no:cacheprovider tests/radiomics/test_radiomics_gpu.py

sanitize "radiomics driver" "$OUT/radiomics" "$PY" benchmarks/gpu/radiomics_gpu.py --sanitize

step "radiomics GPU vs CPU and timing" "$OUT/radiomics_bench.log" \
  "$PY" benchmarks/gpu/radiomics_gpu.py "$OUT"
if [ -f "$OUT/radiomics_gpu.md" ]; then
  echo >> "$SUM"
  tail -n +3 "$OUT/radiomics_gpu.md" >> "$SUM"
fi
exit $fail
