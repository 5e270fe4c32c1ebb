#!/usr/bin/env bash
# SLIC part of the GPU check (issue 11): GPU tests, compute-sanitizer on a small driver,
# benchmarks. Appends to OUTDIR/summary.md; non-zero exit on any failure.
# Run by check.sh after the build and the device check.
set -uo pipefail
OUT=${1:?usage: part_10_slic.sh OUTDIR}
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
S=$OUT/summary.md
LOG=$OUT/slic_log.txt
status=0
echo "## SLIC / unsupervised masks (part_10_slic)" >> "$S"
echo >> "$S"

# 1. GPU tests: GPU labels and UMs equal the CPU path's, streams, bad input, memory
echo "== SLIC GPU tests" | tee "$LOG" >&2
$PY -m pytest -q -p no:cacheprovider -rs tests/kernels/test_slic_gpu.py tests/kernels/test_slic_cuda_cpu.py \
    >> "$LOG" 2>&1
rc=$?
line=$(grep -E '(passed|failed|error)' "$LOG" | tail -1)
if [ $rc -eq 0 ]; then echo "- GPU tests: ok ($line)" >> "$S"
else echo "- GPU tests: FAIL ($line; see slic_log.txt)" >> "$S"; status=1; fi

# 2. compute-sanitizer on a small driver
for tool in memcheck racecheck; do
  echo "== compute-sanitizer $tool" | tee -a "$LOG" >&2
  if ! command -v compute-sanitizer > /dev/null; then
    echo "- sanitizer $tool: FAIL (compute-sanitizer not found)" >> "$S"; status=1; continue
  fi
  compute-sanitizer --tool "$tool" --error-exitcode 9 $PY benchmarks/gpu/slic_driver.py \
      >> "$LOG" 2>&1
  rc=$?
  summary=$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$LOG" | tail -1)
  if [ $rc -eq 0 ]; then echo "- sanitizer $tool: ok (${summary:-no summary line})" >> "$S"
  else echo "- sanitizer $tool: FAIL (exit $rc; ${summary:-see slic_log.txt})" >> "$S"; status=1; fi
done

# 3. benchmarks (CUDA-event timing inside the benchmark file)
echo "== SLIC GPU benchmarks" | tee -a "$LOG" >&2
$PY -m pytest -q -p no:cacheprovider benchmarks/gpu/test_bench_slic_gpu.py --benchmark-only \
    --benchmark-json="$OUT/slic_bench.json" --benchmark-columns=median,rounds >> "$LOG" 2>&1
rc=$?
if [ $rc -ne 0 ]; then echo "- benchmarks: FAIL (see slic_log.txt)" >> "$S"; status=1; fi
if [ -f "$OUT/slic_bench.json" ]; then
  $PY benchmarks/gpu/bench_table.py "$OUT/slic_bench.json" >> "$S" 2>> "$LOG" || status=1
fi
echo >> "$S"
exit $status
