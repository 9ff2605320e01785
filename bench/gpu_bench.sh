#!/usr/bin/env bash
# The whole GPU measurement as ONE prepared script for a GPU machine without network (< 10 minutes).
#
#   bench/gpu_bench.sh --prepare     here, with PyPI: download the pure-Python wheels into bench/wheels (ignored)
#   bench/gpu_bench.sh               on the GPU machine (carry bench/wheels): RN50 + ViT-B-16 ingest, batch 1 vs 64,
#                                    JPEGs decoded on the CPU vs on the GPU, and the decode stage alone
#                                    (bench/gpu_bench.py, <= 300 s); fp16 fidelity and a profile of the ingest
#                                    (bench/gpu_profile.py, <= 150 s); the reader alone with 1, 2 and all cores
#                                    (bench/bench_reader.py, <= 120 s)
#   bench/gpu_bench.sh --device cpu --quick     check the script on any machine (no profile, no reader)
#   bench/gpu_bench.sh --profile                on the GPU machine: the profile alone
#
# The GPU machine must have torch, torchvision, numpy and pillow (a PyTorch image does); cn_clip, six and
# tqdm come from bench/wheels, unpacked into a temporary folder on PYTHONPATH (no pip, no network).
# Results: bench/results/gpu_ingest.json, gpu_profile.json and reader.json with their logs, copied into $OUT
# when that is set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=bench/wheels
REQUIRED_WHEELS=("cn_clip==1.6.0" six tqdm)

if [[ "${1:-}" == "--prepare" ]]; then
    mkdir -p "$WHEELS"
    "$PY" -m pip download --no-deps --only-binary=:all: -d "$WHEELS" "${REQUIRED_WHEELS[@]}"
    ls -l "$WHEELS"
    exit 0
fi

DEPS=$(mktemp -d "${TMPDIR:-/tmp}/searchcore_gpu_deps.XXXXXX")
trap 'rm -rf "$DEPS"' EXIT
missing=$("$PY" - <<'PY'
import importlib.util
print(" ".join(m for m in ("cn_clip", "six", "tqdm") if importlib.util.find_spec(m) is None))
PY
)
for module in $missing; do
    wheel=$(ls "$WHEELS"/"${module}"-*.whl 2>/dev/null | head -n 1 || true)
    if [[ -z "$wheel" ]]; then
        echo "error: $module is not installed and no wheel for it is in $WHEELS; run bench/gpu_bench.sh --prepare" \
             "where PyPI is reachable and carry $WHEELS" >&2
        exit 1
    fi
    "$PY" -m zipfile -e "$wheel" "$DEPS"
    echo "using $module from $(basename "$wheel")"
done
for module in torch torchvision numpy PIL; do
    "$PY" -c "import $module" 2>/dev/null || { echo "error: $module is missing on this machine" >&2; exit 1; }
done

export PYTHONPATH="$DEPS:$PWD${PYTHONPATH:+:$PYTHONPATH}"
module=bench.gpu_bench log=bench/results/gpu_ingest.log
if [[ "${1:-}" == "--profile" ]]; then
    module=bench.gpu_profile log=bench/results/gpu_profile.log
    shift
fi
mkdir -p bench/results
status=0
timeout 300 "$PY" -m "$module" "$@" 2>&1 | tee "$log" || status=$?
if [[ "$module" == bench.gpu_bench && " $* " == *" --quick "* ]]; then
    echo "--quick: no profile and no reader run (the full run has them)"
elif [[ "$module" == bench.gpu_bench ]]; then
    device=cuda
    [[ " $* " == *" --device cpu "* ]] && device=cpu
    timeout 150 "$PY" -m bench.gpu_profile --device "$device" 2>&1 | tee bench/results/gpu_profile.log || status=1
    timeout 120 "$PY" -m bench.bench_reader --workers "1,2,$(nproc)" --repeat 1 2>&1 | tee bench/results/reader.log \
        || status=1
fi
if [[ -n "${OUT:-}" ]]; then
    cp bench/results/gpu_*.log bench/results/gpu_*.json bench/results/reader.* "$OUT"/ 2>/dev/null || true
fi
exit "$status"
