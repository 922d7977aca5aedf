#!/usr/bin/env bash
# Collect the held-out real content of scripts/ladder_check.py into one folder: photographs and
# camera clips that no training source contains, from Debian packages outside the training list.
#
#   scripts/collect_heldout.sh [OUT_DIR]        (default: data/heldout; needs root for apt-get)
#   python scripts/ladder_check.py data/heldout --out data/ladders --pans 3
#
# The files are named one by one (every one checked by eye to be a photograph of a real scene:
# no renders, drawings, screen recordings, test charts or grayscale scans), so the set is the
# same on every machine:
#   - Debian `opencv-doc` (examples/data): 14 photographs and the camera clip vtest.avi;
#   - Debian `forensics-samples-files`: 6 phone photographs and a 1080p phone clip;
#   - Debian `palapeli-data`: the 5 photographs of its puzzle collection.
# Skipped on purpose: opencv-doc's renders (Blender_Suzanne), charts, grayscale stereo pairs,
# paintings (starry_night) and animation (Megamind); forensics-samples-files' logos and its
# screen recording (movie-hello); the tiny cinepak clip tree.avi.
set -euo pipefail
OUT=${1:-data/heldout}
APT_PACKAGES="opencv-doc forensics-samples-files palapeli-data"
if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $APT_PACKAGES >/dev/null
else
    echo "not root: assuming $APT_PACKAGES are installed" >&2
fi
mkdir -p "$OUT/images" "$OUT/videos"

OPENCV=/usr/share/doc/opencv-doc/examples/data
FORENSICS=/usr/share/forensics-samples/original-files
PALAPELI=/usr/share/palapeli/collection
IMAGES=(
    "$OPENCV"/{aero1,aloeL,apple,baboon,board,building,ela_original,fruits,leuvenA}.jpg
    "$OPENCV"/{messi5,orange,squirrel_cls,stuff}.jpg "$OPENCV"/graf1.png
    "$FORENSICS"/pic1/{IMG-20191006-WA0002.jpg,IMG_1054.JPG,IMG_20200827_231612.jpg}
    "$FORENSICS"/pic2/{IMG_20191224_234846,IMG_20200124_231153,IMG_20200608_111614}.jpg
    "$PALAPELI"/{castle-maintenon,cincinnati-bridge,citrus-fruits,european-honey-bee}.jpg
    "$PALAPELI"/panther-chameleon-female.jpg
)
VIDEOS=("$OPENCV"/vtest.avi "$FORENSICS"/movie1/VID_20191220_170832.mp4)

# Copies, never links: the ladders are built next to them and must not touch the packages.
for f in "${IMAGES[@]}"; do
    cp "$f" "$OUT/images/"
done
for f in "${VIDEOS[@]}"; do
    cp "$f" "$OUT/videos/"
done
echo "collected ${#IMAGES[@]} photographs and ${#VIDEOS[@]} camera clips in $OUT"
