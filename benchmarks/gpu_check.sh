#!/usr/bin/env bash
# The GPU proof: tests, `xaffine check` and the benchmark on cupy, torch:cuda and jax:gpu.
#
#   benchmarks/gpu_check.sh [WHEELS]
#
# Runs on a machine with an NVIDIA GPU where CuPy, PyTorch (CUDA) and JAX (CUDA) are
# installed. Without network access, pass a folder of wheels for what is missing there
# (array-api-compat, array-api-strict, array-api-extra, hypothesis): they are installed
# into a private folder, nothing else is touched. Writes benchmarks/gpu_results.md (the
# table to commit) and, when $OUT is set, copies of every log and JSON file there.
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
wheels=${1:-}
site=${TMPDIR:-/tmp}/xaffine-site
logs=${OUT:-${TMPDIR:-/tmp}/xaffine-gpu}
mkdir -p "$logs"
if [ -n "$wheels" ]; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" "$wheels"/*.whl || exit 1
    export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export NVIDIA_TF32_OVERRIDE=0 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$logs/gpu.txt"

status=0
: > "$logs/summary.txt"
for backend in cupy torch:cuda jax:gpu; do
    log="$logs/tests-${backend/:/-}.log"
    XAFFINE_BACKENDS=$backend timeout 900 "$py" -m pytest -q -p no:cacheprovider tests >"$log" 2>&1
    code=$?
    [ $code -eq 0 ] || status=1
    echo "$backend: $(tail -n 1 "$log") (exit $code)" | tee -a "$logs/summary.txt"
done

"$py" -m xaffine check --backends cupy,torch:cuda,jax:gpu --json "$logs/check.json" | tee "$logs/check.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

"$py" -m xaffine bench --backends cupy,torch:cuda --dtypes float32,float64 --rounds 7 \
    --shape small --shape medium --shape large --shape seq --json "$logs/bench.json" | tee "$logs/bench.txt"
"$py" -m xaffine bench --backends cupy,torch:cuda --dtypes float32 --rounds 5 \
    --shape 8192x8192x8192 --json "$logs/bench-8192.json" | tee "$logs/bench-8192.txt"

"$py" - "$logs" <<'PY'
import json, pathlib, sys, time
logs = pathlib.Path(sys.argv[1])
rows, machine = [], {}
for name in ("bench.json", "bench-8192.json"):
    path = logs / name
    if path.exists():
        data = json.loads(path.read_text())
        rows += data["results"]
        machine = data["machine"]
lines = [
    f"# xaffine on a GPU: {machine.get('gpu', 'unknown GPU')}, {time.strftime('%Y-%m-%d')}",
    "",
    "Forward+backward (affine_vjp, then its vjp), median of paired rounds after warm-up,",
    "device synchronised before each clock read; TF32 off. Produced by benchmarks/gpu_check.sh.",
    "",
    "| backend | dtype | shape | time (ms) | / matmul bound | / torch | TFLOP/s |",
    "|---|---|---|---|---|---|---|",
]
for r in rows:
    ratios = r["ratios"]
    lines.append(
        f"| {r['backend']} | {r['dtype']} | {'x'.join(map(str, r['dims']))} | {r['times']['xaffine'] * 1e3:.3f} | "
        f"{ratios.get('xaffine/bound', float('nan')):.3f} | {ratios.get('xaffine/torch', float('nan')):.3f} | "
        f"{r['gflops'] / 1e3:.1f} |"
    )
lines += ["", "Tests per backend:", "", *("    " + l for l in (logs / "summary.txt").read_text().splitlines())]
text = "\n".join(lines) + "\n"
pathlib.Path("benchmarks/gpu_results.md").write_text(text)
(logs / "gpu_results.md").write_text(text)
print(text)
PY
exit $status
