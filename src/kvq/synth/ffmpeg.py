"""The ffmpeg executable that corpus building runs (encoders and VMAF)."""

from __future__ import annotations

from kvq.synth.errors import SynthError


def ffmpeg_exe() -> str:
    """The ffmpeg of the ``imageio-ffmpeg`` package (a static build with libvmaf)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise SynthError(
            "kvq synth needs imageio-ffmpeg for VMAF: pip install 'kvq-vqa[synth]'"
        ) from None
    return imageio_ffmpeg.get_ffmpeg_exe()
