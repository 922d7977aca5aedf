"""Does a model order graded damage of real content it never saw? Severity ladders, scored.

    python scripts/ladder_check.py HELDOUT_DIR --out runs/ladders [--weights W ...]

``HELDOUT_DIR`` holds ``images/`` (photographs) and ``videos/`` (camera clips) that no training
source contains. Every source becomes one ladder of four levels per kind of damage:

    compression  videos: x264 (medium) CRF 18 / 30 / 40 / 51; photos: JPEG quality 90 / 50 / 20 / 5
    blur         Gaussian, σ = 1 / 2 / 4 / 8 px
    noise        additive Gaussian, σ = 5 / 10 / 20 / 40 grey levels (new noise every frame)
    downscale    down by 2 / 3 / 4 / 6 and back up (bicubic)         — never applied in training
    codec2       videos: MPEG-2, qscale 4 / 10 / 20 / 31; photos: WebP quality 80 / 40 / 15 / 1
                                                                     — never applied in training

Videos are also made from the first photographs (a 1920×1080 pan, as real uploads are), so the
video ladders do not rest on three clips. Damaged videos other than the codec ladders are stored
lossless (x264 ``-qp 0``), so no second compression blurs the ladder.

A ladder is ordered when the model scores every milder level above every stronger one: the
table gives, per kind and medium, the fraction of the 6 within-ladder pairs in the right order
(ties count as wrong; raw model outputs, so the calibration's clipping adds no ties). The built
ladders are kept in ``--out`` and reused.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from kvq.synth.ffmpeg import ffmpeg_exe

KINDS = ("compression", "blur", "noise", "downscale", "codec2")
LEVELS = {
    "video": {
        "compression": (18, 30, 40, 51),
        "blur": (1, 2, 4, 8),
        "noise": (5, 10, 20, 40),
        "downscale": (2, 3, 4, 6),
        "codec2": (4, 10, 20, 31),
    },
    "photo": {
        "compression": (90, 50, 20, 5),
        "blur": (1, 2, 4, 8),
        "noise": (5, 10, 20, 40),
        "downscale": (2, 3, 4, 6),
        "codec2": (80, 40, 15, 1),
    },
}
PHOTO_SIDE = 1920  # photographs are reduced to this long side first: the "pristine" picture
CLIP_SECONDS = 4.0
PAN = (1920, 1080, 25.0, 100)  # width, height, fps, frames of the videos made from photos


def read_frames(path: Path, seconds: float) -> tuple[np.ndarray, float]:
    """The first ``seconds`` of a video as RGB uint8 (T, H, W, 3) (even sizes) and its fps."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        frames = []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) >= round(seconds * fps):
                break
    clip = np.stack(frames)
    return clip[:, : clip.shape[1] // 2 * 2, : clip.shape[2] // 2 * 2], fps


def pan_clip(image: Image.Image) -> np.ndarray:
    """A left-to-right pan over a photograph, whole pixels per frame (no resampling)."""
    width, height, _, frames = PAN
    scale = max(height / image.height, (width + 2 * frames) / image.width)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    rgb = np.asarray(image.convert("RGB"))
    top = (rgb.shape[0] - height) // 2
    return np.stack([rgb[top : top + height, 2 * t : 2 * t + width] for t in range(frames)])


def encode(frames: np.ndarray, fps: float, out: Path, codec_args: list[str]) -> None:
    _, h, w, _ = frames.shape
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    cmd += ["-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-", *codec_args, str(out)]
    subprocess.run(cmd, input=frames.tobytes(), check=True)


def damage(frames: np.ndarray, kind: str, level: float, seed: int) -> np.ndarray:
    """Pixel-domain damage (blur, noise, down-up scaling) of (T, H, W, 3) uint8 frames."""
    out = []
    rng = np.random.default_rng(seed)
    for frame in frames:
        image = Image.fromarray(frame)
        if kind == "blur":
            image = image.filter(ImageFilter.GaussianBlur(level))
        elif kind == "downscale":
            small = (max(1, round(image.width / level)), max(1, round(image.height / level)))
            image = image.resize(small, Image.BICUBIC).resize(image.size, Image.BICUBIC)
        array = np.asarray(image)
        if kind == "noise":
            noisy = array + rng.normal(0.0, level, array.shape)
            array = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
        out.append(array)
    return np.stack(out)


def build_video_ladders(name: str, frames: np.ndarray, fps: float, out: Path) -> dict:
    ladders = {}
    for kind in KINDS:
        paths = []
        for k, level in enumerate(LEVELS["video"][kind]):
            path = out / f"{name}.{kind}{k}.mp4"
            if kind == "codec2":
                path = path.with_suffix(".mpg")
            if not path.exists():
                tmp = path.with_name(".tmp-" + path.name)
                if kind == "compression":
                    args = ["-c:v", "libx264", "-preset", "medium", "-crf", str(level)]
                    encode(frames, fps, tmp, [*args, "-pix_fmt", "yuv420p"])
                elif kind == "codec2":
                    args = ["-c:v", "mpeg2video", "-qscale:v", str(level), "-qmin", str(level)]
                    encode(frames, fps, tmp, [*args, "-pix_fmt", "yuv420p", "-f", "mpeg"])
                else:
                    damaged = damage(frames, kind, level, seed=k)
                    lossless = ["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0"]
                    encode(damaged, fps, tmp, [*lossless, "-pix_fmt", "yuv444p"])
                tmp.rename(path)
            paths.append(str(path))
        ladders[kind] = paths
    return ladders


def build_photo_ladders(name: str, image: Image.Image, out: Path) -> dict:
    scale = min(1.0, PHOTO_SIDE / max(image.size))
    image = image.convert("RGB")
    if scale < 1:
        image = image.resize(
            (round(image.width * scale), round(image.height * scale)), Image.LANCZOS
        )
    ladders = {}
    for kind in KINDS:
        paths = []
        for k, level in enumerate(LEVELS["photo"][kind]):
            suffix = {"compression": ".jpg", "codec2": ".webp"}.get(kind, ".png")
            path = out / f"{name}.{kind}{k}{suffix}"
            if not path.exists():
                tmp = path.with_name(".tmp-" + path.name)
                if kind == "compression":
                    image.save(tmp, format="JPEG", quality=level)
                elif kind == "codec2":
                    image.save(tmp, format="WEBP", quality=level)
                else:
                    frame = damage(np.asarray(image)[None], kind, level, seed=k)[0]
                    Image.fromarray(frame).save(tmp, format="PNG")
                tmp.rename(path)
            paths.append(str(path))
        ladders[kind] = paths
    return ladders


def build(heldout: Path, out: Path, pans: int) -> dict[str, dict[str, dict[str, list[str]]]]:
    """``{medium: {source: {kind: [paths, mildest first]}}}``, built once into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    media: dict[str, dict] = {"video": {}, "photo": {}}
    photos = sorted((heldout / "images").iterdir())
    for path in photos:
        with Image.open(path) as image:
            media["photo"][path.stem] = build_photo_ladders(path.stem, image, out)
    for path in sorted((heldout / "videos").iterdir()):
        frames, fps = read_frames(path, CLIP_SECONDS)
        media["video"][path.stem] = build_video_ladders(path.stem, frames, fps, out)
    for path in photos[:pans]:
        with Image.open(path) as image:
            frames = pan_clip(image)
        name = f"pan-{path.stem}"
        media["video"][name] = build_video_ladders(name, frames, PAN[2], out)
    return media


def ordered_fraction(scores: list[float]) -> tuple[int, int]:
    """(pairs in the right order, pairs): the milder level must score strictly higher."""
    pairs = list(combinations(range(len(scores)), 2))
    return sum(scores[i] > scores[j] for i, j in pairs), len(pairs)


def evaluate(media: dict, weights: str | None) -> dict:
    import kvq

    predictor = kvq.load(weights) if weights else kvq.load()
    table: dict[str, dict[str, list[int]]] = {}
    per_source = {}
    for medium, sources in media.items():
        for source, ladders in sources.items():
            for kind, paths in ladders.items():
                scores = []
                for path in paths:
                    result = predictor.score(path)
                    if result.error:
                        sys.exit(f"{path}: {result.error}")
                    scores.append(float(result.raw_score))
                right, total = ordered_fraction(scores)
                counts = table.setdefault(medium, {}).setdefault(kind, [0, 0])
                counts[0] += right
                counts[1] += total
                per_source[f"{medium}/{source}/{kind}"] = [round(s, 5) for s in scores]
    return {"weights": weights or "default", "pairs": table, "scores": per_source}


def markdown(result: dict) -> str:
    lines = [f"weights: {result['weights']}", "", "| kind | videos | photos |", "|---|---|---|"]
    for kind in KINDS:
        cells = []
        for medium in ("video", "photo"):
            right, total = result["pairs"].get(medium, {}).get(kind, [0, 0])
            cells.append(f"{100 * right / total:.1f} % ({right}/{total})" if total else "–")
        lines.append(f"| {kind} | {' | '.join(cells)} |")
    for medium in ("video", "photo"):
        trained = [result["pairs"][medium][k] for k in ("compression", "blur", "noise")]
        right, total = sum(r for r, _ in trained), sum(t for _, t in trained)
        lines.append(f"| compression+blur+noise, {medium}s | {100 * right / total:.1f} % |  |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("heldout", type=Path, help="folder with images/ and videos/")
    parser.add_argument("--out", type=Path, default=Path("runs/ladders"))
    parser.add_argument("--weights", nargs="*", default=[None], help="weights (default: bundled)")
    parser.add_argument("--pans", type=int, default=4, help="videos made from the first photos")
    parser.add_argument("--build-only", action="store_true")
    args = parser.parse_args()
    media = build(args.heldout, args.out, args.pans)
    if args.build_only:
        return
    for weights in args.weights:
        result = evaluate(media, weights)
        # folder and stem: runs/a/best and runs/b/best must not share one result file
        name = "-".join(Path(weights).with_suffix("").parts[-2:]) if weights else "default"
        (args.out / f"result-{name}.json").write_text(json.dumps(result, indent=1))
        print(markdown(result), flush=True)


if __name__ == "__main__":
    main()
