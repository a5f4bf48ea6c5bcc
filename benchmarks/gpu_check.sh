#!/usr/bin/env bash
# The GPU check: rDPO at LLaVA-1.5-7B shape (random weights, bf16, LoRA r128) and `realign-trl eval` throughput,
# on a CUDA machine that has PyTorch and transformers but no network. Writes one JSON. See BENCHMARKS.md.
#
# 1. Here, with the package index reachable (in the realign environment): the wheels the GPU host lacks
#      benchmarks/gpu_check.sh --download wheels/
#    (= pip download --no-deps --only-binary=:all: -d wheels/ -r wheels/requirements.txt, the pinned closure of
#    realign's requirements without torch/torchvision/transformers/tokenizers/safetensors; for a host with another
#    Python or platform set PIP_DOWNLOAD_ARGS="--python-version 3.12 --platform manylinux2014_x86_64").
# 2. Carry the repository and wheels/ to the GPU host, then there (no network):
#      benchmarks/gpu_check.sh --wheels wheels/ --out gpu_check.json
#    (= pip install --no-index --find-links wheels/ -r wheels/requirements-direct.txt, then the check; under
#    8 minutes: the driver stops starting arms after --budget-s 420 s). Extra arguments go to the driver
#    (benchmarks/gpu_check.py run --help), e.g. --num-layers 16 --batch-size 1.
# 3. Anywhere, no GPU: the same steps with tiny shapes on CPU, nothing installed
#      benchmarks/gpu_check.sh --dry-run --out gpu_check_dry.json
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python}
WHEELS="" OUT=gpu_check.json MODE=check DRIVER_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --download) MODE=download; WHEELS=${2:-wheels}; shift $(( $# > 1 ? 2 : 1 ));;
    --wheels) WHEELS=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    --dry-run) MODE=dry; shift;;
    -h|--help) sed -n '2,18p' "$0"; exit 0;;
    *) DRIVER_ARGS+=("$1"); shift;;
  esac
done
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TQDM_DISABLE=1

if [[ $MODE == download ]]; then
  mkdir -p "$WHEELS"
  "$PY" "$REPO/benchmarks/gpu_check.py" requirements > "$WHEELS/requirements.txt"
  "$PY" "$REPO/benchmarks/gpu_check.py" direct > "$WHEELS/requirements-direct.txt"
  # shellcheck disable=SC2086
  "$PY" -m pip download --no-deps --only-binary=:all: -d "$WHEELS" -r "$WHEELS/requirements.txt" ${PIP_DOWNLOAD_ARGS:-}
  echo "gpu_check: $(ls "$WHEELS"/*.whl | wc -l) wheels in $WHEELS ($(du -sh "$WHEELS" | cut -f1)); carry it with the repository"
  exit 0
fi

# fail fast, before installing anything: the host must bring PyTorch with CUDA and transformers
"$PY" - "$MODE" <<'EOF'
import sys
def fail(message):
    print(f"gpu_check: {message}", file=sys.stderr)
    sys.exit(2)
try:
    import torch
    import transformers  # noqa: F401
except ImportError as e:
    fail(f"the host must provide PyTorch and transformers ({e})")
if sys.argv[1] == "check" and not torch.cuda.is_available():
    fail(f"no CUDA device is visible to PyTorch {torch.__version__} (CUDA build {torch.version.cuda}); "
         "run it on a CUDA machine, or use --dry-run for the CPU rehearsal")
EOF

if [[ $MODE == check ]]; then
  if [[ -n $WHEELS ]]; then
    [[ -f $WHEELS/requirements-direct.txt ]] || { echo "gpu_check: $WHEELS/requirements-direct.txt is missing; make the folder with --download" >&2; exit 2; }
    "$PY" -m pip install --no-index --find-links "$WHEELS" -r "$WHEELS/requirements-direct.txt"
  fi
  exec "$PY" "$REPO/benchmarks/gpu_check.py" run --out "$OUT" "${DRIVER_ARGS[@]}"
fi
exec "$PY" "$REPO/benchmarks/gpu_check.py" run --device cpu --tiny --steps 1 --warmup 1 --eval-images 3 \
  --out "$OUT" "${DRIVER_ARGS[@]}"
