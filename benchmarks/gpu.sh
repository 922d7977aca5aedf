#!/usr/bin/env bash
# The GPU measurements (saliency prior, inference and training speed) in one run on a GPU
# machine (H100/H200) that has PyTorch, NumPy, SciPy, PyYAML, tqdm and safetensors but maybe
# not PyAV, which `import kvq` needs: put a cp312 manylinux wheel of it in the checkout's .whl/
# (git-ignored)
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 -d .whl av
# then run `bash benchmarks/gpu.sh` from the checkout; tables land in $OUT (default /tmp/out).
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
cd benchmarks
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv
python3 prior.py --size 448 --batch 8 --dtype bf16
python3 speed.py --size 448 --batch 8 --dtype bf16 --train-batch 2 --prior-impl chunked \
    --models kvq-t --json "$OUT/speed_chunked.json"
python3 speed.py --size 448 --batch 8 --dtype bf16 --train-batch 2 \
    --json "$OUT/speed.json"
cp RESULTS.md "$OUT/RESULTS.md"
