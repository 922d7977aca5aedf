"""The one exception type of :mod:`kvq.video`."""

from __future__ import annotations


class VideoError(Exception):
    """A file cannot be read as a video or image.

    Raised for missing, empty, truncated, corrupt or unsupported files, files without a video
    stream, images disguised as videos, and decodes that exceed their time bound. The message
    names the file and says what is wrong with it.
    """
