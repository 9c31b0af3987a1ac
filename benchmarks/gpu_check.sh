#!/usr/bin/env bash
# One prepared GPU check: the GPU tests and the GPU benchmarks in at most 6 minutes on one H100,
# start-up included, so a borrowed GPU machine is used in one short call.
#
#   bash benchmarks/gpu_check.sh OUT_DIR             # on the GPU machine (from the repository root)
#   bash benchmarks/gpu_check.sh OUT_DIR --dry-run   # here, on a CPU: every size shrunk
#
# Writes into OUT_DIR one JSON per step and summary.json (each step's status, exit code and
# seconds), plus each step's log. A step that fails or runs past its time limit is recorded
# and the next one runs. Steps and their expected time on one H100 (benchmarks/RESULTS.md,
# "GPU check"):
#
#   env          nvidia-smi, torch, CUDA                                          ~5 s
#   gpu_tests    pytest -m gpu (ridge, prepared fits, banded ridge, simplex,
#                LM features on cuda, a device map over one or two GPUs)        ~40 s
#   ridge        the fit at ds003020's TRs and voxels (27,000 x 95,000, primal
#                8,192 features), float32 and bf16 alpha search                 ~60 s
#   permutation  the block permutation test, 95,000 voxels x 1,000 permutations  ~5 s
#   extract_7b   LLaMA-2-7B's shape with random weights: build, save, load,
#                2,000 words with the 512/256 context, peak memory against
#                fmriscaling.sizing; then the device-map path with half the
#                blocks offloaded to the CPU, equal to the one-device pass       ~90 s
#
# The device machine's python3 has CUDA PyTorch, transformers, h5py and pandas, not himalaya
# or accelerate: install those two here into a folder and carry it (it is git-ignored), then
# point GPU_CHECK_SITE at it:
#   .venv/bin/pip install -q --no-deps --target .gpu_site himalaya accelerate
#   (device tool, carry [".gpu_site"]): GPU_CHECK_SITE=.gpu_site bash benchmarks/gpu_check.sh $OUT
# The steps share one budget (GPU_CHECK_BUDGET, 330 s): each gets its own limit or what is left
# of the budget, whichever is less, and a step with no time left is recorded as skipped.
set -uo pipefail

out=${1:?usage: benchmarks/gpu_check.sh OUT_DIR [--dry-run]}
dry=${2:-}
if [[ -n "$dry" && "$dry" != "--dry-run" ]]; then
    echo "unknown option $dry (expected --dry-run)" >&2
    exit 2
fi
mkdir -p "$out"
PY=${PYTHON:-python3}
export PYTHONPATH=".:${GPU_CHECK_SITE:-}${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 MPLBACKEND=Agg

if [[ -n "$dry" ]]; then
    device=cpu
    ridge_size=small
    perm_size=small
    shape=tiny
    limit=120
else
    device=cuda
    ridge_size=gpu-check
    perm_size=ds003020
    shape=llama-2-7b
    limit=150
fi

summary=()
budget=${GPU_CHECK_BUDGET:-330}
ms() { echo $(($(date +%s%N) / 1000000)); }
seconds_since() { # milliseconds at the start -> seconds, 1 decimal
    local d=$(($(ms) - $1))
    printf '%d.%d' $((d / 1000)) $((d % 1000 / 100))
}
t_start=$(ms)
step() { # name, time limit (s), command...
    local name=$1 lim=$2
    shift 2
    local t0 rc status left
    left=$((budget - ($(ms) - t_start) / 1000))
    if ((left < 5)); then
        echo "== $name: skipped, the budget of ${budget} s is spent"
        summary+=("{\"step\": \"$name\", \"status\": \"skipped\", \"rc\": null, \"seconds\": 0}")
        return
    fi
    ((lim > left)) && lim=$left
    t0=$(ms)
    echo "== $name (limit ${lim} s)"
    timeout --kill-after=5 "$lim" "$@" >"$out/$name.log" 2>&1
    rc=$?
    case $rc in
        0) status=ok ;;
        124 | 137) status=timeout ;;
        *) status=failed ;;
    esac
    local s
    s=$(seconds_since "$t0")
    echo "   $status ($rc) in ${s} s"
    [[ $status == ok ]] || tail -n 20 "$out/$name.log"
    summary+=("{\"step\": \"$name\", \"status\": \"$status\", \"rc\": $rc, \"seconds\": $s}")
}

step env 30 "$PY" -c "
import json, platform, subprocess, sys, torch, transformers
info = dict(python=sys.version.split()[0], torch=torch.__version__, transformers=transformers.__version__,
            cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
            devices=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
            cpu=platform.processor(), dry_run=bool('$dry'))
try:
    import accelerate, himalaya
    info.update(accelerate=accelerate.__version__, himalaya=himalaya.__version__)
except ImportError as err:
    info['missing'] = str(err)
try:
    info['nvidia_smi'] = subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total,driver_version',
                                         '--format=csv,noheader'], capture_output=True, text=True).stdout.strip()
except FileNotFoundError:
    info['nvidia_smi'] = None
json.dump(info, open('$out/env.json', 'w'), indent=2)
print(json.dumps(info, indent=2))
"

# the GPU tests (skipped where no CUDA device is visible: the dry run records the skips)
step gpu_tests "$limit" "$PY" -m pytest -m gpu -q -p no:cacheprovider -o addopts="" \
    --junitxml="$out/gpu_tests.xml" tests/test_ridge.py tests/test_prepared.py \
    tests/test_partition.py tests/test_simplex.py tests/test_lm_features.py tests/test_device_map.py

step ridge "$limit" "$PY" benchmarks/ridge_bench.py --size "$ridge_size" --backend auto \
    --no-baseline --score-dtype both --fold-kinds story --json "$out/ridge.json"

step permutation 60 "$PY" benchmarks/permutation_bench.py --size "$perm_size" --device "$device" \
    --json "$out/permutation.json"

step extract_7b "$limit" "$PY" benchmarks/extract_large_bench.py --shape "$shape" \
    --device "$device" --json "$out/extract_7b.json"

total=$(seconds_since "$t_start")
{
    echo "{\"dry_run\": $([[ -n "$dry" ]] && echo true || echo false), \"total_seconds\": $total, \"steps\": ["
    (IFS=,; echo "${summary[*]}")
    echo "]}"
} >"$out/summary.json"
echo "== total ${total} s; $out/summary.json"
