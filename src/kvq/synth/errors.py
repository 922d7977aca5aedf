"""The one exception of :mod:`kvq.synth`."""


class SynthError(RuntimeError):
    """Bad input to ``kvq synth`` (sources, settings) or a failing external tool (ffmpeg)."""
