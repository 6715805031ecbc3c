"""The HTML reports render in a real browser: headless Chromium screenshots each page,
and the screenshot shows the page and its plots (many colours, the plots' own green and
red among them), not a blank or broken page.

Chromium must be installed (``/usr/bin/chromium``, or ``LEARNLOOP_CHROMIUM``): a missing
browser fails the test, it never skips. The page is opened from a file with networking
off; it is self-contained, so nothing is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from offline_learner.report import write_report
from offline_learner.report_plots import BETTER, WORSE

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[1] / "fixtures" / "offline"
WIDTH, HEIGHT = 1280, 2000


def chromium() -> str:
    found = os.environ.get("LEARNLOOP_CHROMIUM") or shutil.which("chromium")
    found = found or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        pytest.fail(
            "chromium is not installed: the report render test needs a headless browser "
            "(apt-get install chromium, or set LEARNLOOP_CHROMIUM)",
            pytrace=False,
        )
    return found


def screenshot(page: Path, out: Path, profile: Path) -> np.ndarray:
    """The page rendered by headless Chromium, as an RGB array."""
    subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={WIDTH},{HEIGHT}",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with Image.open(out) as image:
        return np.asarray(image.convert("RGB"))


def has_colour(pixels: np.ndarray, hex_colour: str, tolerance: int = 10) -> bool:
    """Whether some pixels are within ``tolerance`` of ``hex_colour`` (anti-aliasing)."""
    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    close = np.abs(pixels.astype(int) - target).max(axis=2) <= tolerance
    return int(close.sum()) > 200


@pytest.mark.parametrize("kind", ["evaluation", "optimization", "importance"])
def test_the_report_renders_in_chromium(kind: str, tmp_path: Path) -> None:
    payload = json.loads((FIXTURES / f"{kind}_payload.json").read_text())
    page = write_report(payload, tmp_path / f"{kind}.html", now=datetime(2026, 12, 2, tzinfo=UTC))
    pixels = screenshot(page, tmp_path / f"{kind}.png", tmp_path / "profile")
    assert pixels.shape == (HEIGHT, WIDTH, 3)
    not_white = (pixels < 245).any(axis=2).mean()
    packed = pixels.astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.int32)
    colours = int(np.count_nonzero(np.bincount(packed.ravel())))
    assert not_white > 0.05, f"{kind}: only {not_white:.1%} of the screenshot is drawn"
    assert colours > 200, f"{kind}: {colours} distinct colours, the plots did not render"
    # The plots drew: every payload has an interval or bar that is significantly better,
    # the evaluation also a worse one (the page's CSS has no such saturated colours).
    assert has_colour(pixels, BETTER), f"{kind}: no plot colour {BETTER} in the screenshot"
    if kind == "evaluation":
        assert has_colour(pixels, WORSE)
