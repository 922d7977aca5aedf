"""Several raters rating at once against a real uvicorn server: no rating may be lost."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from kvq.annotate import AnnotationStore
from kvq.annotate.server import AnnotateSettings, BackgroundServer, create_app
from kvq.annotate.storage import NUM_CELLS, scan_images

RATERS = 6
IMAGES = 1


def expected_score(rater: int, image: int, cell: int) -> float:
    return 1 + ((rater * 7 + image * 3 + cell) % 9) / 2


def rate_everything(url: str, token: str, rater: int) -> int:
    """One rater's session on its own connection: every cell, the first pass with a wrong
    score that is then corrected (so writes also race with updates of the same rows)."""
    sent = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        ids = sorted(im["id"] for im in client.get("/api/rater/state").json()["images"])
        for j, image in enumerate(ids):
            for cell in range(NUM_CELLS):
                for score in (
                    5.0 if expected_score(rater, j, cell) != 5 else 1.0,
                    expected_score(rater, j, cell),
                ):
                    r = client.put(f"/api/rater/images/{image}/cells/{cell}", json={"score": score})
                    r.raise_for_status()
                    sent += 1
    return sent


def test_parallel_raters_lose_no_rating(tmp_path: Path):
    (tmp_path / "images").mkdir()
    for i in range(IMAGES):
        Image.fromarray(np.full((14, 14, 3), 40 * i, np.uint8)).save(
            tmp_path / "images" / f"{i}.png"
        )
    store = AnnotationStore(tmp_path / "c.sqlite")
    images = store.sync_images(scan_images(tmp_path / "images"))
    tokens = [store.add_rater(f"rater{k}")[1] for k in range(RATERS)]
    app = create_app(store, AnnotateSettings(tmp_path / "images", "admin", glance_seconds=0))
    with BackgroundServer(app) as server, ThreadPoolExecutor(RATERS) as pool:
        sent = list(pool.map(rate_everything, [server.url] * RATERS, tokens, range(RATERS)))
    store.close()

    assert sent == [2 * IMAGES * NUM_CELLS] * RATERS
    reopened = AnnotationStore(tmp_path / "c.sqlite")  # what is on disk, not in a cache
    got = {(r.rater, r.image, r.cell): r.score for r in reopened.ratings()}
    names = [im.name for im in images]
    expected = {
        (f"rater{k}", names[j], cell): expected_score(k, j, cell)
        for k in range(RATERS)
        for j in range(IMAGES)
        for cell in range(NUM_CELLS)
    }
    assert got == expected
