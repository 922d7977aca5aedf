#!/usr/bin/env bash
# The attention ablation of the KVQ supplement (Tab. 9) for the default recipe: the same
# training (configs/default_weights.yaml) with each attention of the fusion stages — FWA
# (IWA + CWA top-k, the default), IWA only, CWA only — on one corpus, then the corpus test split
# and the LPVQ protocol on its test stills, one table at the end.
#
#   scripts/attention_ablation.sh [DATA_ROOT] [OUT_DIR] [kvq train options ...]
#   scripts/attention_ablation.sh data/synth runs/attention_ablation --set optim.epochs=5
#
# The stem is frozen, so its cache does not depend on the attention: it is built by the first
# run and hard-linked into the others (the cache checks its fingerprint before any reuse).
set -euo pipefail
DATA=${1:-data/synth}
OUT=${2:-runs/attention_ablation}
shift $(($# < 2 ? $# : 2))
for attention in fwa iwa cwa; do
    run="$OUT/$attention"
    mkdir -p "$run"
    if [ "$attention" != fwa ] && [ ! -e "$run/stem_cache.safetensors" ]; then
        ln "$OUT/fwa/stem_cache.safetensors" "$run/stem_cache.safetensors"
    fi
    kvq train configs/default_weights.yaml --data-root "$DATA" --output-dir "$run" \
        --set "model.overrides.attention=$attention" "$@"
    kvq lpvq eval --images "$DATA" --labels "$DATA/labels/test_stills.txt" \
        --weights "$run/best.safetensors" --size native --view fragments \
        --output-dir "$run/lpvq_test" --no-figures
done
"${PYTHON:-python}" - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
print("| attention | test SRCC | test PLCC | LPVQ inter SRCC | LPVQ intra SRCC | LPVQ intra PLCC |")
print("|---|---:|---:|---:|---:|---:|")
for attention in ("fwa", "iwa", "cwa"):
    test = next(iter(json.loads((out / attention / "test_metrics.json").read_text()).values()))
    lpvq = json.loads((out / attention / "lpvq_test" / "lpvq_results.json").read_text())
    m = lpvq["variants"][0]
    cells = [test["srcc"], test["plcc"], m["inter_srcc"], m["intra_srcc"], m["intra_plcc"]]
    print(f"| {attention} | " + " | ".join(f"{x:.3f}" for x in cells) + " |")
PYEOF
