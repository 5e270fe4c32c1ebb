# Shared by the part_*.sh scripts of the GPU check: source it as
#   . benchmarks/gpu/common.sh OUTDIR "Title (part_NN_x.sh)" "what"
# from the repository root. It sets OUT (absolute), PY and SUM, writes the part's heading
# to OUTDIR/summary.md, exits 0 with a "skipped" line where no CUDA device is usable, and
# defines step(); a part ends with `exit $fail`.
OUT=$1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
SUM="$OUT/summary.md"
echo "## $2" >> "$SUM"

reason=$("$PY" -c "from umsynth.kernels.config import cuda_status; ok, why = cuda_status(); print(why); raise SystemExit(0 if ok else 3)" 2>&1)
if [ $? -ne 0 ]; then
  echo "$3 GPU check skipped: no usable CUDA device ($reason)."
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

# sanitize NAME LOGPREFIX COMMAND...: compute-sanitizer memcheck and racecheck on a driver
sanitize() {
  local name=$1 prefix=$2; shift 2
  local san; san=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  if [ ! -x "$san" ]; then
    echo "- FAIL compute-sanitizer: not found (PATH or /usr/local/cuda/bin)" >> "$SUM"
    fail=1
    return
  fi
  for tool in memcheck racecheck; do
    step "compute-sanitizer $tool ($name)" "${prefix}_$tool.log" "$san" --tool "$tool" --error-exitcode 9 "$@"
  done
}
