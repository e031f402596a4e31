"""The screenshots of docs/viewer.md, taken by the headless Chromium the browser tests use.

Opens a finished ``mrseg demo`` folder's test slides with all its models and the ground truth (what
the demo's last line prints), in-process on a free port of 127.0.0.1, and writes into ``--out``:

* ``viewer_overlay.png``: one pane, one model's heatmap with the colour bar and the truth outlines;
* ``viewer_side_by_side.png``: six synchronised panes, one model each, the probe in the side bar;
* ``viewer_outlines.png``: a close-up with truth outlines and predicted contours over the slide;
* ``viewer_slides.png``: the slide list (thumbnails, names, sizes).

Usage::

    mrseg demo --out DIR && python benchmarks/viewer_screenshots.py DIR [--out docs/img] [--split test]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from mrseg.view.browser import headless_chromium, screenshot, wait_for_tiles, wait_until
from mrseg.view.catalog import build_catalog
from mrseg.view.server import ViewServer

ROOT = Path(__file__).resolve().parents[1]

#: Fits pane 0 onto the level-0 box (x, y, w, h) of the first ground-truth outline, grown by ``arguments[0]``.
ZOOM_TO_TRUTH_JS = """
const v = window.mrsegView, pane = v.panes[0], grow = arguments[0];
const ring = v.truth[0].rings.reduce((a, r) => (r.length > a.length ? r : a), []);
const xs = ring.filter((_, i) => i % 2 === 0), ys = ring.filter((_, i) => i % 2 === 1);
const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
const w = (x1 - x0) * grow, h = (y1 - y0) * grow;
const rect = pane.slideItem.imageToViewportRectangle((x0 + x1 - w) / 2, (y0 + y1 - h) / 2, w, h);
pane.viewer.viewport.fitBounds(rect, true);
return [(x0 + x1) / 2, (y0 + y1) / 2];
"""


def probe(driver: Any, x: float, y: float) -> None:
    """Move the pointer onto level-0 ``(x, y)`` of pane 0 (the probe follows it) and wait for the values."""
    element = driver.find_element(By.ID, "osd-0")
    ex, ey, w, h = driver.execute_script(
        "const p = window.mrsegView.panes[0].slideItem.imageToViewerElementCoordinates("
        "new OpenSeadragon.Point(arguments[0], arguments[1]));"
        "return [p.x, p.y, arguments[2].clientWidth, arguments[2].clientHeight];",
        x,
        y,
        element,
    )
    ActionChains(driver).move_to_element_with_offset(element, int(ex - w / 2), int(ey - h / 2)).perform()
    wait_until(driver, "document.querySelector('#probe-values tr .value')", 30, "the probe's values")
    time.sleep(0.5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo", type=Path, help="A finished mrseg demo folder.")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--model", default="mrn_bilinear", help="The model of the single-pane shots.")
    parser.add_argument("--split", default="test", help="The demo's split to show (data/SPLIT, preds/SPLIT).")
    parser.add_argument("--slide", default=None, help="The slide id of the single-slide shots (default: the first).")
    args = parser.parse_args(argv)
    test = args.demo / "data" / args.split
    preds = {p.name: p for p in sorted((args.demo / "preds" / args.split).iterdir()) if p.is_dir()}
    order = ["unet_0.5", "unet_1", "unet_2", "unet_4", "mrn_bilinear", "mrn_transposed"]
    preds = {k: preds[k] for k in sorted(preds, key=lambda k: order.index(k) if k in order else len(order))}
    server = ViewServer(build_catalog(test, preds, test / "annotations"), port=0)
    thread = server.serve_in_thread()
    slide = args.slide or next(iter(server.viewer.catalog.slides))
    base = f"{server.url}view/{slide}"
    try:
        with headless_chromium(1600, 900) as driver:
            driver.get(f"{base}?layers={args.model}&opacity=0.55&threshold=0.5")
            wait_for_tiles(driver)
            screenshot(driver, args.out / "viewer_overlay.png")
            driver.get(f"{base}?panes=6&opacity=0.55&threshold=0.5")
            wait_for_tiles(driver)
            centre = driver.execute_script(ZOOM_TO_TRUTH_JS, 2.5)
            wait_for_tiles(driver)
            probe(driver, *centre)
            screenshot(driver, args.out / "viewer_side_by_side.png")
            driver.get(f"{base}?layers={args.model}&opacity=0.35&threshold=0.5&contours=1")
            wait_for_tiles(driver)
            driver.execute_script(ZOOM_TO_TRUTH_JS, 1.3)
            wait_for_tiles(driver)
            screenshot(driver, args.out / "viewer_outlines.png")
            driver.get(server.url)
            time.sleep(2.0)
            screenshot(driver, args.out / "viewer_slides.png")
    finally:
        server.stop()
        thread.join(10)
    print(f"wrote 4 screenshots to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
