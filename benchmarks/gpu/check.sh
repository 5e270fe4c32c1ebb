#!/usr/bin/env bash
# The one GPU check (kernels.md): build with CUDA, make sure a device is usable, then run
# every benchmarks/gpu/part_*.sh OUTDIR in sorted order. Each part runs its GPU tests,
# sanitizers and benchmarks, appends to OUTDIR/summary.md and returns non-zero on a
# failure; the exit status is non-zero if the build, the device check or any part failed.
# Usage: benchmarks/gpu/check.sh OUTDIR      (about 5 minutes on one H100, no network)
set -uo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 64
fi
mkdir -p "$1" && OUT=$(cd "$1" && pwd)
cd "$(dirname "$0")/../.."
# the project's virtualenv where there is one (this machine), else the image's python3
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=$PWD/.venv/bin/python
else PY=python3; fi
export PYTHON=$PY PYTHONUNBUFFERED=1
for d in /usr/local/cuda/bin /usr/local/cuda-13/bin; do
  [ -d "$d" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH=$d:$PATH ;; esac
done
export PATH
S=$OUT/summary.md
log() { echo "$*" | tee -a "$S"; }

{
  echo "# umsynth GPU check"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- python: $($PY -c 'import sys; print(sys.version.split()[0])' 2>&1)"
  echo "- nvcc: $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo 'not found')"
  echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi not available')"
  echo "- torch: $($PY -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)' 2>/dev/null || echo 'not installed')"
  echo "- cupy: $($PY -c 'import cupy; print(cupy.__version__)' 2>/dev/null || echo 'not installed')"
  echo
} > "$S"

# 1. build with CUDA (a fresh build directory: CMake caches a missing nvcc)
echo "== build" >&2
t0=$(date +%s)
if ! command -v nvcc > /dev/null; then
  log "- build: FAIL (nvcc not found on PATH)"
  exit 1
fi
if ! $PY -m pip install -q --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1; then
  tail -30 "$OUT/build.log" >&2
  log "- build: FAIL (see build.log)"
  exit 1
fi
if ! $PY -c "from umsynth import _cuda" >> "$OUT/build.log" 2>&1; then
  log "- build: FAIL (umsynth._cuda was not built; see build.log)"
  exit 1
fi
rm -f "$OUT/build.log"
log "- build: ok in $(( $(date +%s) - t0 )) s, CUDA architectures $($PY -c 'from umsynth import _cuda; print(_cuda.architectures())')"

# 2. the device
echo "== device" >&2
reason=$($PY -c "
from umsynth.kernels.config import cuda_status
ok, why = cuda_status()
print(why)
raise SystemExit(0 if ok else 3)")
if [ $? -ne 0 ]; then
  log "- device: NONE: $reason"
  echo "check.sh: stopping here: no usable CUDA device ($reason)" >&2
  exit 2
fi
log "- device: $reason"
echo >> "$S"

# 3. the parts, in sorted order
status=0
for part in benchmarks/gpu/part_*.sh; do
  [ -e "$part" ] || continue
  echo "== $part" >&2
  t0=$(date +%s)
  if bash "$part" "$OUT"; then r=ok; else r=FAIL; status=1; fi
  log "- $(basename "$part"): $r in $(( $(date +%s) - t0 )) s"
done
echo >> "$S"
log "overall: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
