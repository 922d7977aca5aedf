"""Fit the SSIM-decibel → VMAF-scale line of kvq.synth.measure on whole-frame distortions.

    python scripts/calibrate_synth_labels.py [SOURCES_DIR] [--clips N]

For each factor and severity, a pristine clip of the default size is distorted over the whole
frame, stored as the corpus stores it, and measured both ways (clip VMAF, mean cell SSIM)
against the registered reference, as the corpus measures it. The
least-squares line v = a·ssim_db + b over those pairs is printed with its fit quality; the
constants SSIM_DB_SLOPE and SSIM_DB_OFFSET in kvq/synth/measure.py come from this script.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from kvq.synth import FACTORS, SynthConfig, find_sources, make_distortion
from kvq.synth.distortions import encode_h264
from kvq.synth.measure import cell_ssim, ssim_db, vmaf
from kvq.synth.motion import CameraPath
from kvq.synth.sources import View, pristine_clip
from kvq.video import iter_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="?", default="data/sources")
    parser.add_argument("--clips", type=int, default=4, help="sources to use")
    parser.add_argument("--frames", type=int, default=30)
    args = parser.parse_args()
    config = SynthConfig.default(num_frames=args.frames)
    rng = np.random.default_rng(0)
    sources = find_sources([args.sources])
    chosen = [sources[i] for i in rng.choice(len(sources), args.clips, replace=False)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for source in chosen:
            view = View(camera=CameraPath.sample(rng)) if source.kind == "image" else View()
            pristine = pristine_clip(
                source, view, config.num_frames, config.height, config.width, config.fps
            )
            for factor in FACTORS:
                for severity in (0.1, 0.3, 0.6, 1.0):
                    distortion = make_distortion(factor).sample(rng)
                    distorted = distortion(pristine, severity)
                    reference = distortion.registered(pristine, severity)  # as the corpus
                    path = Path(tmp) / "clip.mp4"
                    encode_h264(distorted, path, config.fps, config.storage_crf, config.x264_preset)
                    v = vmaf(path, reference, config.fps, config.vmaf_subsample)
                    stored = np.stack(list(iter_frames(path)))
                    s = float(cell_ssim(stored, reference, config.ssim_frames).mean())
                    rows.append((factor, severity, v, s))
                    print(
                        f"{source.name:<22}{factor:<13}{severity:>5}  VMAF {v:6.2f}  SSIM {s:.4f}"
                    )
    v = np.array([r[2] for r in rows])
    x = ssim_db(np.array([r[3] for r in rows]))
    inside = (v > 1.0) & (v < 99.0)  # VMAF clips at 0 and 100: those pairs carry no slope
    v, x = v[inside], x[inside]
    a, b = np.polyfit(x, v, 1)
    r = np.corrcoef(x, v)[0, 1]
    print(f"fit: VMAF ≈ {a:.3f}·ssim_db + {b:.3f}  (Pearson r = {r:.3f}, n = {len(rows)})")


if __name__ == "__main__":
    main()
