"""Region masks: where in the frame a distortion applies.

A :class:`MaskSpec` is resolution-free (coordinates are fractions of the frame) so the plan of a
corpus does not depend on the render size; :meth:`MaskSpec.render` gives an (H, W) float32 mask
in [0, 1] with feathered edges and exact zeros outside the region.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

MASK_KINDS: tuple[str, ...] = ("full", "rect", "blob", "subject", "background")


@dataclass(frozen=True)
class MaskSpec:
    """``kind`` ∈ MASK_KINDS. ``rect``: (x0, y0, x1, y1). ``blob``: centres and radii of a few
    overlapping discs (cx, cy, r, …). ``subject``/``background``: an ellipse (cx, cy, rx, ry) and
    its complement. All values are fractions of the frame width/height (r of the width)."""

    kind: str = "full"
    shape: tuple[float, ...] = ()

    @classmethod
    def sample(cls, rng: np.random.Generator, kind: str | None = None) -> MaskSpec:
        """A random region of the given kind (rect, blob, subject or background if None)."""
        kind = kind or str(rng.choice(("rect", "blob", "subject", "background")))
        if kind == "full":
            return cls()
        if kind == "rect":
            w, h = rng.uniform(0.2, 0.6, size=2)
            x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            shape = (x0, y0, x0 + w, y0 + h)
        elif kind == "blob":
            n = int(rng.integers(2, 5))
            cx, cy = rng.uniform(0.2, 0.8, size=2)
            discs = [
                (cx + rng.normal(0, 0.08), cy + rng.normal(0, 0.12), rng.uniform(0.06, 0.15))
                for _ in range(n)
            ]
            shape = tuple(v for disc in discs for v in disc)
        elif kind in ("subject", "background"):
            shape = (
                rng.uniform(0.35, 0.65),
                rng.uniform(0.35, 0.65),
                rng.uniform(0.15, 0.3),
                rng.uniform(0.2, 0.4),
            )
        else:
            raise ValueError(f"unknown mask kind {kind!r}; known: {list(MASK_KINDS)}")
        return cls(kind, tuple(round(float(v), 4) for v in shape))

    def render(self, height: int, width: int) -> np.ndarray | None:
        """(H, W) float32 mask in [0, 1]; None for ``full`` (the whole frame, no blending)."""
        if self.kind == "full":
            return None
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        x, y = (x + 0.5) / width, (y + 0.5) / height
        if self.kind == "rect":
            x0, y0, x1, y1 = self.shape
            hard = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
        elif self.kind == "blob":
            aspect = height / width
            hard = np.zeros((height, width), bool)
            for cx, cy, r in np.reshape(self.shape, (-1, 3)):
                hard |= (x - cx) ** 2 + ((y - cy) * aspect) ** 2 < r**2
        elif self.kind in ("subject", "background"):
            cx, cy, rx, ry = self.shape
            hard = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1.0
            if self.kind == "background":
                hard = ~hard
        else:
            raise ValueError(f"unknown mask kind {self.kind!r}; known: {list(MASK_KINDS)}")
        return feather(hard, sigma=0.01 * width)


def feather(hard: np.ndarray, sigma: float) -> np.ndarray:
    """Soften a boolean mask's edge inward: 1 deep inside, exact 0 outside the region."""
    soft = gaussian_filter(hard.astype(np.float32), sigma, truncate=3.0) if sigma > 0.5 else hard
    soft = np.clip((np.asarray(soft, np.float32) - 0.5) * 2.0, 0.0, 1.0)
    return np.where(hard, soft, 0.0).astype(np.float32)
