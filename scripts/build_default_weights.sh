#!/usr/bin/env bash
# Rebuild the bundled default weights `kvq-xs-synth` from scratch on a CPU:
# sources → synthetic corpus → training (configs/default_weights.yaml) → test metrics → package.
#   scripts/build_default_weights.sh            (root: installs the Debian photo packages)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/collect_sources.sh data/sources
kvq synth data/synth --sources data/sources --workers 2
kvq train configs/default_weights.yaml
kvq eval runs/default_weights/best.safetensors --sets data/synth/labels/test.txt \
    --data-root data/synth --output runs/default_weights/eval_test --device cpu
for view in fragments resize; do
    kvq lpvq eval --images data/synth --labels data/synth/labels/test_stills.txt \
        --weights runs/default_weights/best.safetensors --size native --view "$view" \
        --out "runs/default_weights/lpvq_test_$view" --no-figures
done
python scripts/export_weights.py runs/default_weights/best.safetensors \
    src/kvq/weights/kvq-xs-synth.safetensors
