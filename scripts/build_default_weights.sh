#!/usr/bin/env bash
# Rebuild the bundled default weights `kvq-lite-synth` from scratch on a CPU:
# sources → synthetic ladder corpus → training (configs/default_weights.yaml) → test metrics,
# LPVQ and held-out ladders → package.
#   scripts/build_default_weights.sh            (root: installs the Debian photo packages)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/collect_sources.sh data/sources
# 686 clips → 120 training ladders of 4 severities, 25 validation and 25 test ladders.
kvq synth data/synth --sources data/sources --num-videos 686 --workers 2
kvq train configs/default_weights.yaml
kvq eval runs/default_weights/best.safetensors --sets data/synth/labels/test.txt \
    --data-root data/synth --groups data/synth/labels/test_groups.csv \
    --output-dir runs/default_weights/eval_test --device cpu
kvq lpvq eval --images data/synth --labels data/synth/labels/test_stills.txt \
    --weights runs/default_weights/best.safetensors --size native --view fragments \
    --output-dir runs/default_weights/lpvq_test --no-figures
# Graded damage of real content outside the training list.
scripts/collect_heldout.sh data/heldout
python scripts/ladder_check.py data/heldout --out data/ladders --pans 3 \
    --weights runs/default_weights/best.safetensors
python scripts/export_weights.py runs/default_weights/best.safetensors \
    src/kvq/weights/kvq-lite-synth.safetensors
