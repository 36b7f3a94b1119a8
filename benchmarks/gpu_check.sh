#!/usr/bin/env bash
# The GPU proof: tests, `xaffine check` and the benchmark on cupy, torch:cuda and jax:gpu,
# in one run of about 8 minutes (issue 12).
#
#   OUT=DIR benchmarks/gpu_check.sh [WHEELS]
#
# What runs, each step under its own `timeout` (seconds, below), every log written to $OUT
# as it goes, so a run cut short still returns what it did:
#   1. wheels   the pure-Python wheels in WHEELS unpacked into a private folder (30 s)
#   2. probe    each backend once; one line per backend that cannot run, then it is left out
#   3. tests    the whole suite on the first backend (cupy), `-m gpu_smoke` on the others
#               (torch:cuda, jax:gpu), `-rs` so every skip's reason is in the log (see sizing)
#   4. check    `xaffine check --backends cupy,torch:cuda,jax:gpu`
#   5. bench    cupy and torch:cuda, float32 and float64, small/medium/large/seq, then
#               8192x8192x8192 float32
#   6. results  $OUT/gpu_results.md: GPU model, driver, library versions, date, the exact
#               command, pytest's summary and skips per backend, check, benchmark table.
#               Written only under $OUT (also when the run is cut short by a signal); copy
#               it to benchmarks/gpu_results.md by hand after a real GPU run.
#
# Limits (s): wheels 30, probe 60 each (a few s in practice), whole suite on cupy 120,
# gpu_smoke on torch:cuda 60 and on jax:gpu 120, check 45, bench 75, big bench 45: about
# 8.5 minutes if every step ran to its limit, well under in a normal run.
# Sizing, measured on the CPU of the development machine (2 cores shared with other test
# runs, so the times are upper bounds and vary 2-5x with the load):
#   backend           whole suite (pytest time)    -m gpu_smoke (45 tests)
#   numpy             22 s (609 tests)             18 s
#   torch             28 s (609)                   26 s
#   jax               355 s (609)                  212 s (eager JAX, many tiny ops)
#   array_api_strict  120 s                        -
#   dask              314 s                        -
# JAX pays a dispatch (CPU) or a compile (jit) per op and shape, so on jax:gpu only the
# smoke subset can fit, and it may still reach its limit (its log then shows what ran);
# cupy runs like numpy plus kernel launches, so its whole suite should fit in 120 s.
# `xaffine check` on numpy,torch,jax: 45 s; the CPU bench of the four named shapes on
# numpy,torch (float32, float64, 3 rounds) ran past 90 s here; 512x512x512 float32: 28 s.
#
# Dry runs here (no GPU): `OUT=/tmp/gpu-dry PYTHON=.venv/bin/python bash
# benchmarks/gpu_check.sh ../shared/wheels` prints one "no usable GPU (reason)" line per
# step and backend and finishes in about 20 s; the rehearsal with CPU backends,
# `GPU_BACKENDS=numpy,torch,jax BENCH_BACKENDS=numpy,torch BIG_SHAPE=512x512x512 ROUNDS=3`,
# exercised every step end to end in 7 min 57 s of a loaded 2-core CPU: numpy whole suite
# 629 passed, 2 skipped in 141 s (then stopped at the 150 s limit in teardown), torch smoke
# 485 passed in 49 s (before the subset was narrowed), jax smoke stopped at 75 s, check 45 s
# (all 6 passed), bench of the named shapes stopped at 90 s, 512^3 bench 28 s; the results
# file was written under $OUT only, and the run exited 1 for the steps that hit limits.
#
# Wheels (Python 3.12 machine without network; CuPy, torch, JAX, numpy, pytest and
# hypothesis are there already): copy the three py3-none-any wheels from
# ../shared/wheels into the ignored folder .whl/ of the checkout:
#   array_api_compat-1.16.0-py3-none-any.whl
#   array_api_extra-0.11.5-py3-none-any.whl
#   array_api_strict-2.6.1-py3-none-any.whl
# then, with the device tool, one call (carry the ignored folder; leaves a rerun's time):
#   run(command="bash benchmarks/gpu_check.sh .whl", carry=[".whl"], timeout_s=570)
# (the device tool sets $OUT; what the script leaves there comes back even if cut short)
#
# Environment: PYTHON (default python3), OUT (default $TMPDIR/xaffine-gpu),
# GPU_BACKENDS (default cupy,torch:cuda,jax:gpu; the first gets the whole suite),
# BENCH_BACKENDS (default cupy,torch:cuda), BIG_SHAPE (default 8192x8192x8192),
# ROUNDS (default 7), LIMIT_SCALE (multiplies every step limit; default 1).
set -uo pipefail
cd "$(dirname "$0")/.."
command_line="$0 $*"
py=${PYTHON:-python3}
wheels=${1:-}
out=${OUT:-${TMPDIR:-/tmp}/xaffine-gpu}
backends=${GPU_BACKENDS:-cupy,torch:cuda,jax:gpu}
bench_backends=${BENCH_BACKENDS:-cupy,torch:cuda}
big=${BIG_SHAPE:-8192x8192x8192}
rounds=${ROUNDS:-7}
scale=${LIMIT_SCALE:-1}
mkdir -p "$out" || exit 1
export NVIDIA_TF32_OVERRIDE=0 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# JAX would otherwise take 75% of the GPU at its first array, beside CuPy and torch in `check`.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
: >"$out/steps.txt"

limit() { echo $(($1 * scale)); }
note() { echo "$*" | tee -a "$out/steps.txt"; }
# step NAME LIMIT LOG COMMAND...: run under `timeout`, log to $out/LOG, one line of outcome.
step() {
    local name=$1 seconds t0 code
    seconds=$(limit "$2")
    local log=$out/$3
    shift 3
    t0=$(date +%s)
    timeout --kill-after=10 "$seconds" "$@" >"$log" 2>&1
    code=$?
    local took=$(($(date +%s) - t0))
    case $code in
        0) note "$name: ok (${took} s)" ;;
        124 | 137) note "$name: stopped at its ${seconds} s limit (log: $(basename "$log"))" ;;
        *) note "$name: exit $code (${took} s): $(tail -n 1 "$log")" ;;
    esac
    return $code
}

# Outside $out: what comes back from $out is counted in files.
site=${TMPDIR:-/tmp}/xaffine-gpu-site
if [ -n "$wheels" ]; then
    # Pure-Python wheels are zip files: unpacking them is installing them, no pip needed.
    step "wheels" 30 wheels.log "$py" -c '
import pathlib, sys, zipfile
site = pathlib.Path(sys.argv[1]); site.mkdir(parents=True, exist_ok=True)
wheels = sorted(pathlib.Path(sys.argv[2]).glob("*.whl"))
if not wheels:
    sys.exit(f"no .whl file in {sys.argv[2]}")
for w in wheels:
    zipfile.ZipFile(w).extractall(site)
    print(w.name)
' "$site" "$wheels" || exit 1
    export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

results() {
    trap - EXIT INT TERM
    "$py" - "$out" "$command_line" "$started" >"$out/results.log" 2>&1 <<'PY' || echo "results: failed, see results.log"
import json, pathlib, re, subprocess, sys, time
out, command, started = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]

def block(text):
    """Lines as a Markdown code block (indented; blank lines left empty)."""
    return [("    " + line).rstrip() for line in text.splitlines()]

def read(name):
    path = out / name
    return path.read_text(errors="replace") if path.exists() else ""

lines = [f"# xaffine on a GPU: {read('gpu.txt').strip() or 'no GPU seen'}", ""]
lines += [f"- started: {started}; finished: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"]
lines += [f"- command: `{command}` (environment: {read('env.txt').strip()})"]
lines += [f"- {line}" for line in read("versions.txt").splitlines()]
lines += ["", "## Steps", "", *block(read("steps.txt"))]
lines += ["", "## Tests per backend", ""]
for log in sorted(out.glob("tests-*.log")):
    text = log.read_text(errors="replace").splitlines()
    summary = next((l for l in reversed(text) if re.search(r"\b(passed|failed|error|skipped|no tests ran)\b", l)), "(no summary: cut short)")
    lines += [f"{log.stem.removeprefix('tests-')}: {summary.strip('= ')}", ""]
    lines += block("\n".join(l for l in text if l.startswith(("SKIPPED", "FAILED", "ERROR", "XFAIL")))) + [""]
lines += ["## xaffine check", "", *block(read("check.txt")), ""]
rows, machine = [], {}
for name in ("bench.json", "bench-big.json"):
    try:
        data = json.loads(read(name))
    except ValueError:
        continue
    rows += data.get("results", [])
    machine = data.get("machine", machine)
lines += [
    "## Benchmark",
    "",
    "Forward+backward (affine_vjp, then its vjp), median of paired rounds after warm-up,",
    "device synchronised before each clock read; TF32 off.",
    "",
    "| backend | dtype | shape | time (ms) | / matmul bound | / torch | TFLOP/s |",
    "|---|---|---|---|---|---|---|",
]
nan = float("nan")
for r in rows:
    ratios, times = r.get("ratios", {}), r.get("times", {})
    lines.append(
        f"| {r.get('backend')} | {r.get('dtype')} | {'x'.join(map(str, r.get('dims', [])))} | "
        f"{times.get('xaffine', nan) * 1e3:.3f} | {ratios.get('xaffine/bound', nan):.3f} | "
        f"{ratios.get('xaffine/torch', nan):.3f} | {r.get('gflops', nan) / 1e3:.3f} |"
    )
if not rows:
    lines.append("| (no benchmark result) | | | | | | |")
(out / "gpu_results.md").write_text("\n".join(lines) + "\n")
print(f"wrote {out / 'gpu_results.md'}")
PY
    note "results: $out/gpu_results.md"
}
trap results EXIT
trap 'exit 130' INT TERM

# The machine: GPU model and driver, library versions, the environment that matters.
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$out/gpu.txt" 2>&1
else
    echo "no nvidia-smi here" >"$out/gpu.txt"
fi
note "gpu: $(head -n 1 "$out/gpu.txt")"
echo "GPU_BACKENDS=$backends BENCH_BACKENDS=$bench_backends BIG_SHAPE=$big ROUNDS=$rounds NVIDIA_TF32_OVERRIDE=0" >"$out/env.txt"
timeout 60 "$py" - >"$out/versions.txt" 2>&1 <<'PY'
import importlib, platform
print(f"python {platform.python_version()} on {platform.machine()}")
for name in ("numpy", "cupy", "torch", "jax", "jaxlib", "array_api_compat", "array_api_strict", "array_api_extra", "pytest", "hypothesis"):
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        print(f"{name}: not importable ({type(exc).__name__})")
        continue
    extra = ""
    if name == "torch":
        extra = f" (CUDA {module.version.cuda})"
    if name == "cupy":
        try:
            extra = f" (CUDA runtime {module.cuda.runtime.runtimeGetVersion()})"
        except Exception as exc:
            extra = f" ({type(exc).__name__})"
    print(f"{name} {getattr(module, '__version__', '?')}{extra}")
PY

# Probe: which backends can run; one clear line for each one that cannot.
probe() {
    timeout "$(limit 60)" "$py" -c '
import sys
from xaffine._backends import BackendUnavailable, find_backend
try:
    find_backend(sys.argv[1]).load(exact=True)
except BackendUnavailable as exc:
    sys.exit(f"{sys.argv[1]}: no usable GPU ({exc.kind}: {exc.reason})" if find_backend(sys.argv[1]).gpu
             else f"{sys.argv[1]}: cannot run here ({exc.kind}: {exc.reason})")
except Exception as exc:
    sys.exit(f"{sys.argv[1]}: cannot run here ({exc!r})")
' "$1" 2>&1 | tail -n 1
    return "${PIPESTATUS[0]}"
}
usable=()
IFS=, read -ra wanted <<<"$backends"
for b in "${wanted[@]}"; do
    if reason=$(probe "$b"); then
        usable+=("$b")
        note "probe $b: usable"
    else
        note "${reason:-$b: probe failed}"
    fi
done

status=0
[ ${#usable[@]} -gt 0 ] || { note "no requested backend can run here: nothing to prove"; status=2; }
# Tests: the whole suite on the first requested backend, the smoke subset on the others.
for b in "${wanted[@]}"; do
    case " ${usable[*]} " in *" $b "*) ;; *) note "tests $b: skipped (not usable, see probe)"; continue ;; esac
    if [ "$b" = "${wanted[0]}" ]; then
        selection=(tests xaffine) what="whole suite" seconds=120
    elif [ "${b%%:*}" = jax ]; then
        selection=(tests -m gpu_smoke) what="-m gpu_smoke" seconds=120
    else
        selection=(tests -m gpu_smoke) what="-m gpu_smoke" seconds=60
    fi
    XAFFINE_BACKENDS=$b step "tests $b ($what)" "$seconds" "tests-${b/:/-}.log" \
        "$py" -m pytest -q -p no:cacheprovider -rs --durations=10 "${selection[@]}" || status=1
    note "    $(grep -E '(passed|failed|error|no tests ran)' "$out/tests-${b/:/-}.log" | tail -n 1)"
done

# xaffine check on the usable backends.
if [ ${#usable[@]} -gt 0 ]; then
    list=$(IFS=,; echo "${usable[*]}")
    step "check $list" 45 check.txt "$py" -m xaffine check --backends "$list" --json "$out/check.json" || status=1
else
    note "check: skipped (no usable backend)"
fi

# Benchmark on the usable benchmark backends.
bench=()
IFS=, read -ra bench_wanted <<<"$bench_backends"
for b in "${bench_wanted[@]}"; do
    case " ${usable[*]} " in
        *" $b "*) bench+=("$b") ;;
        *) reason=$(probe "$b") || note "bench: left out ${reason:-$b}" ;;
    esac
done
if [ ${#bench[@]} -gt 0 ]; then
    list=$(IFS=,; echo "${bench[*]}")
    step "bench $list" 75 bench.txt "$py" -m xaffine bench --backends "$list" --dtypes float32,float64 \
        --rounds "$rounds" --shape small --shape medium --shape large --shape seq --json "$out/bench.json" || status=1
    step "bench $list $big" 45 bench-big.txt "$py" -m xaffine bench --backends "$list" --dtypes float32 \
        --rounds "$rounds" --shape "$big" --json "$out/bench-big.json" || status=1
else
    note "bench: skipped (no usable benchmark backend)"
fi
exit $status
