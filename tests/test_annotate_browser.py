"""End-to-end: an admin and a rater in headless Chromium against a real server.

Uses Debian's chromium (``apt-get install -y chromium``) driven by Playwright; never
``playwright install``. Outside CI the test is skipped when the browser is missing; with
``CI`` set a missing browser fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kvq.annotate import AnnotationStore
from kvq.annotate.server import AnnotateSettings, BackgroundServer, create_app
from kvq.annotate.storage import NUM_CELLS, scan_images
from kvq.data.labels import read_lpvq_labels

CHROMIUM = os.environ.get("KVQ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
COLOURS = {"a.png": (200, 40, 40), "b.png": (40, 40, 200)}
GREY = (128, 128, 128)
TIMEOUT_MS = 15_000


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        reason = f"needs Playwright and Chromium at {CHROMIUM} (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason + "; CI must install them")
        pytest.skip(reason)
    return sync_playwright


def wanted(image: str, cell: int) -> float:
    """The score the test gives: every value of the scale occurs."""
    return 1 + ((cell * 5 + (image == "b.png") * 2) % 9) / 2


PIXEL_JS = """([fx, fy]) => {
    const c = document.getElementById("view");
    const d = c.getContext("2d").getImageData(
        Math.floor(fx * c.width), Math.floor(fy * c.height), 1, 1).data;
    return [d[0], d[1], d[2]];
}"""


def pixel(page, x_frac: float, y_frac: float) -> tuple[int, int, int]:
    return tuple(page.evaluate(PIXEL_JS, [x_frac, y_frac]))


def glance_centre(page) -> tuple[int, int, int]:
    """The centre pixel while the whole image is on screen, read in the page itself (the glance
    is shorter than a round trip to the browser may take on a busy machine)."""
    handle = page.wait_for_function(
        f"""() => document.body.dataset.phase === "glance" && ({PIXEL_JS})([0.5, 0.5])""",
        polling=20,
    )
    return tuple(handle.json_value())


def cell_centre(cell: int) -> tuple[float, float]:
    r, c = divmod(cell, 7)
    return (c + 0.5) / 7, (r + 0.5) / 7


def on_screen(page, names: dict[int, str]) -> tuple[str, int]:
    """Wait until a cell is ready to rate → (image name, cell)."""
    handle = page.wait_for_function(
        """() => document.body.dataset.phase === "rate"
            && [document.getElementById("view").dataset.image,
                document.getElementById("view").dataset.cell]"""
    )
    image, cell = handle.json_value()
    return names[int(image)], int(cell)


def rate_with_keyboard(page, score: float, variant: int) -> None:
    if score == int(score):
        page.keyboard.press(str(int(score)))
    elif variant % 2:  # 2.5 = "2" then up
        page.keyboard.press(str(int(score)))
        page.keyboard.press("ArrowUp" if variant % 4 == 1 else "+")
    else:  # 2.5 = "3" then down
        page.keyboard.press(str(int(score) + 1))
        page.keyboard.press("ArrowDown" if variant % 4 == 0 else "-")
    page.keyboard.press("Enter")


def test_rater_and_admin_in_chromium(tmp_path: Path):
    sync_playwright = _playwright()
    (tmp_path / "images").mkdir()
    for name, colour in COLOURS.items():
        Image.fromarray(np.full((56, 70, 3), colour, np.uint8)).save(tmp_path / "images" / name)
    store = AnnotationStore(tmp_path / "b.sqlite")
    names = {im.id: im.name for im in store.sync_images(scan_images(tmp_path / "images"))}
    app = create_app(store, AnnotateSettings(tmp_path / "images", "adm1n", glance_seconds=0.3))

    with BackgroundServer(app) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
        page.set_default_timeout(TIMEOUT_MS)

        # Admin creates a rater and reads the private link off the page.
        page.goto(f"{server.url}/admin#token=adm1n")
        page.fill("#rater-name", "eve")
        page.click("#add-rater button[type=submit]")
        page.wait_for_selector("#new-link", state="visible")
        link = page.locator("#new-link-url").inner_text()
        assert link.startswith(f"{server.url}/rate#token=")

        # The rater glances at the whole image first, then sees one cell with the rest covered.
        page.goto(link)
        centre = glance_centre(page)
        first_image = names[int(page.locator("#view").get_attribute("data-image"))]
        assert centre == COLOURS[first_image]
        assert page.locator("#criteria li").count() == 5
        image, cell = on_screen(page, names)
        x, y = cell_centre(cell)
        assert pixel(page, x, y) == COLOURS[image]
        other = (cell + 24) % NUM_CELLS
        assert pixel(page, *cell_centre(other)) == GREY

        given: dict[tuple[str, int], float] = {}
        changed = None
        for step in range(2 * NUM_CELLS):
            image, cell = on_screen(page, names)
            assert (image, cell) not in given, "a rated cell was offered again"
            score = wanted(image, cell)
            if step % 3 == 2:
                page.click(f"#scale button[data-score='{score:g}']")
            else:
                rate_with_keyboard(page, score, step)
            given[(image, cell)] = score
            if step == 5:
                # Going back shows the previous cell with its saved score; change it.
                on_screen(page, names)
                page.keyboard.press("ArrowLeft")
                back = on_screen(page, names)
                assert back == (image, cell)
                assert page.locator("#scale button.saved").get_attribute("data-score") == (
                    f"{score:g}"
                )
                changed = 5.0 if score != 5 else 1.0
                page.keyboard.press(str(int(changed)))
                page.keyboard.press("Enter")
                given[(image, cell)] = changed
            if step == 20:
                # A reload (or crash) mid-image loses nothing and resumes at the next cell.
                on_screen(page, names)
                page.reload()
                assert glance_centre(page) == COLOURS[image]
                on_screen(page, names)
                assert f"{step + 1} of {2 * NUM_CELLS} overall" in page.inner_text("#progress")
                assert len(store.ratings()) == step + 1
        assert changed is not None
        page.wait_for_selector("body[data-phase=done]")
        assert page.locator("#done").is_visible()

        # Admin sees completion and downloads the labels.
        page.goto(f"{server.url}/admin#token=adm1n")
        row = page.locator("tr[data-rater=eve]")
        assert "100%" in row.inner_text()
        with page.expect_download() as download:
            page.click("#dl-labels")
        download.value.save_as(tmp_path / "labels.txt")
        browser.close()

    labels = read_lpvq_labels(tmp_path / "labels.txt")
    assert sorted(labels) == sorted(COLOURS)
    for name, grid in labels.items():
        expected = [given[(name, cell)] for cell in range(NUM_CELLS)]
        np.testing.assert_allclose(grid.ravel(), expected)
    stored = {(r.image, r.cell): r.score for r in store.ratings()}
    assert stored == given


# Text from raters and file names that would run or format as HTML if it were not escaped.
HOSTILE_RATER = "<img src=x onerror=window.pwned=1>"
HOSTILE_IMAGE = "<i>b&amp;.png"


def test_admin_screening_report_is_a_table_in_chromium(tmp_path: Path):
    sync_playwright = _playwright()
    (tmp_path / "images").mkdir()
    for name in ("a.png", HOSTILE_IMAGE):
        Image.fromarray(np.full((14, 14, 3), 90, np.uint8)).save(tmp_path / "images" / name)
    store = AnnotationStore(tmp_path / "r.sqlite")
    images = {im.name: im for im in store.sync_images(scan_images(tmp_path / "images"))}
    eve, hostile = store.add_rater("eve")[0], store.add_rater(HOSTILE_RATER)[0]
    for rater, names in ((eve, images), (hostile, ["a.png"])):
        for name in names:
            for cell in range(NUM_CELLS):
                store.rate(rater, images[name].id, cell, 1 + (cell % 9) / 2)
    app = create_app(store, AnnotateSettings(tmp_path / "images", "adm1n", glance_seconds=0))

    with BackgroundServer(app) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(accept_downloads=True)
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{server.url}/admin#token=adm1n")
        page.wait_for_selector("#admin", state="visible")
        page.fill("#min-raters", "2")
        page.click("#show-report")
        page.wait_for_selector("#report", state="visible")
        head = page.locator("#report-raters thead th").all_inner_texts()
        assert head[0] == "Rater" and head[-1] == "Verdict" and "Outliers above" in head
        rows = [
            row.locator("td").all_text_contents()
            for row in page.locator("#report-raters tbody tr").all()
        ]
        # Screened by name order; each cell of a.png has two scores, none an outlier.
        assert rows == [
            [HOSTILE_RATER, "1", "49", "0", "0", "0.0 %", "kept"],
            ["eve", "2", "49", "0", "0", "0.0 %", "kept"],
        ]
        assert page.locator("#report-left-out li").all_text_contents() == [
            f"{HOSTILE_IMAGE} (1 kept)"
        ]
        assert "1 images exported" in page.inner_text("#report-summary")
        assert page.locator("#report img, #report i").count() == 0
        assert page.evaluate("() => window.pwned") is None

        page.uncheck("#screening")
        page.click("#show-report")
        page.wait_for_function(
            """() => document.querySelector("#report-raters tbody td:last-child")
                .textContent === "not screened" """
        )
        # The JSON stays available: the same report as a download.
        with page.expect_download() as download:
            page.click("#dl-report")
        download.value.save_as(tmp_path / "screening.json")
        browser.close()

    report = json.loads((tmp_path / "screening.json").read_text())
    assert report["screening"] is False and report["min_raters"] == 2
    assert [r["name"] for r in report["raters"]] == [HOSTILE_RATER, "eve"]
