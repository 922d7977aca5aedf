"""Copy trained weights into the package as half-precision safetensors with their config.

    python scripts/export_weights.py runs/default_weights/best.safetensors \
        src/kvq/weights/kvq-lite-synth.safetensors

Half precision halves the file (the package ships it); loading casts back to float32.
"""

from __future__ import annotations

import argparse

import torch

from kvq.models import load_model, save_pretrained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="weights written by kvq train (best.safetensors)")
    parser.add_argument("target", help="where to write the packaged weights")
    args = parser.parse_args()
    model, header = load_model(args.source)
    header.pop("format_version", None)
    header.pop("model", None)  # save_pretrained writes both again
    path = save_pretrained(model, args.target, header, dtype=torch.float16)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
