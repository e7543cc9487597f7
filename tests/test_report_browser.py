"""The report as a person sees it: opened in headless Chromium (Debian's ``chromium``), with
assertions on the screenshot's pixels and on where the browser laid things out, not only on
the HTML string.

A real run with one failing check (the accuracy suite under a profile that asks for top-1
>= 0.999) must show FAIL and that check on the first screen; a passing run shows PASS; the
plots and example images are drawn. Chromium missing: skipped with the reason, except under
``CI=true`` or ``--strict``, where a missing browser fails (``scripts/setup.sh`` installs it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vcheck.report import chromium, demo
from vcheck.report.document import write_atomic
from vcheck.report.html import render

REPO = Path(__file__).resolve().parents[1]
ACCURACY = REPO / "suites" / "test_accuracy.py"
N = 300
SCREEN = (1280, 800)
RED, GREEN = (0xCF, 0x22, 0x2E), (0x1A, 0x7F, 0x37)
SELECTORS = {
    "verdict": "#verdict",
    "failing": "li.failing-check",
    "plots": "figure.plotfig svg, figure.figfig svg",
    "images": ".thumbs img",
    "tables": "figure.tablefig table",
}


@pytest.fixture(scope="module", autouse=True)
def _needs_chromium(request: pytest.FixtureRequest) -> None:
    if chromium.find_chromium() is not None:
        return
    reason = "chromium is not installed (apt-get install -y chromium; scripts/setup.sh does it)"
    if os.environ.get("CI") == "true" or request.config.getoption("strict", False):
        pytest.fail(f"{reason}: the browser tests must run in CI and under --strict")
    pytest.skip(reason)


def run_accuracy(cwd: Path, cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(cwd), "PY_COLORS": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    for name in ("PYTEST_ADDOPTS", "VCHECK_CACHE_DIR", "PYTEST_XDIST_WORKER"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(ACCURACY), f"--max-samples={N}",
         f"--cache-dir={cache}", "-p", "no:cacheprovider", "-k", "test_metric", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real runs of the accuracy metrics: one failing check (top-1 >= 0.999), and PASS."""
    cwd = tmp_path_factory.mktemp("browser")
    cache = cwd / "cache"
    (cwd / "strict.toml").write_text("[accuracy]\ntop1 = { min = 0.999 }\n")
    failing = run_accuracy(cwd, cache, "--profile=strict.toml", "--report=fail.html")
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert failing.stdout.count("FAILED CHECK") == 1
    passing = run_accuracy(cwd, cache, "--report=pass.html")
    assert passing.returncode == 0, passing.stdout + passing.stderr
    return {"fail": cwd / "fail.html", "pass": cwd / "pass.html"}


def pixels(png: Path) -> np.ndarray:
    return np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)


def region(image: np.ndarray, box: dict) -> np.ndarray:
    x, y = int(box["x"]), int(box["y"])
    return image[y : y + int(box["h"]), x : x + int(box["w"])]


def share_of(area: np.ndarray, color: tuple[int, int, int], tolerance: int = 12) -> float:
    close = (np.abs(area - np.array(color)) <= tolerance).all(axis=-1)
    return float(close.mean()) if close.size else 0.0


def on_first_screen(box: dict, layout: dict) -> bool:
    """Inside the browser's viewport at the top of the page (no scrolling)."""
    return box["y"] >= 0 and box["y"] + box["h"] <= layout["viewport"]["h"]


def test_one_failing_check_shows_fail_and_that_check_on_the_first_screen(reports, tmp_path):
    png = tmp_path / "fail.png"
    chromium.screenshot(reports["fail"], png, SCREEN)
    image = pixels(png)
    layout = chromium.probe(reports["fail"], SELECTORS, SCREEN)
    (verdict,) = layout["elements"]["verdict"]
    assert verdict["text"] == "FAIL" and on_first_screen(verdict, layout)
    badge = region(image, verdict)
    assert share_of(badge, RED) > 0.6  # the badge is painted red ...
    assert share_of(badge, (255, 255, 255), 40) > 0.03  # ... with the white word on it
    (failing,) = layout["elements"]["failing"]  # exactly the one failing check
    assert "top1 on fmnist_test" in failing["text"] and "threshold ≥ 0.999" in failing["text"]
    assert on_first_screen(failing, layout)
    row = region(image, failing)
    dark = (row.sum(axis=-1) < 3 * 110).mean()
    assert dark > 0.02  # its text was painted there, on the pink failures box
    assert share_of(row, (0xFF, 0xF5, 0xF5), 3) > 0.5


def test_a_passing_run_shows_pass(reports, tmp_path):
    png = tmp_path / "pass.png"
    chromium.screenshot(reports["pass"], png, SCREEN)
    layout = chromium.probe(reports["pass"], SELECTORS, SCREEN)
    (verdict,) = layout["elements"]["verdict"]
    assert verdict["text"] == "PASS" and on_first_screen(verdict, layout)
    assert share_of(region(pixels(png), verdict), GREEN) > 0.6
    assert layout["elements"]["failing"] == []


def test_the_accuracy_plots_are_drawn(reports, tmp_path):
    """The run's reliability diagram and per-class recall: blue bars painted in their box."""
    layout = chromium.probe(reports["fail"], SELECTORS, SCREEN)
    plots = layout["elements"]["plots"]
    assert len(plots) == 2
    bottom = int(max(p["y"] + p["h"] for p in plots)) + 10
    png = tmp_path / "tall.png"
    chromium.screenshot(reports["fail"], png, (SCREEN[0], bottom), settle_ms=2000)
    image = pixels(png)
    for plot in plots:
        area = region(image, plot)
        assert area.shape[0] > 150 and area.shape[1] > 300
        bluish = (area[..., 2] - area[..., 0] > 80).mean()
        assert bluish > 0.02  # bars in the palette's blue (drawn half-transparent)
        assert (area.sum(axis=-1) < 3 * 100).mean() > 0.005  # axes and tick labels


def test_later_suites_are_laid_out_lazily():
    """Every suite section after the first skips layout until scrolled near (so a report of
    thousands of checks opens fast); the first screen never waits for it."""
    page = render(demo.document())
    sections = re.findall(r'<section class="(suite[^"]*)"', page)
    assert len(sections) > 1 and sections[0] == "suite"
    assert set(sections[1:]) == {"suite later"}
    assert "section.suite.later{content-visibility:auto" in page


def test_every_kind_of_picture_is_drawn(tmp_path):
    """The synthetic document: series, bars, tables and example images all render. A headless
    screenshot paints a ``content-visibility: auto`` section only if the browser judged it near
    the viewport in time, which varies with machine load (a CI run once got a blank plot 3,800
    px down), so this page is made eager: what is tested here is the drawing, and the laziness
    has its own test above. The window is as tall as the page, so the probe and the screenshot
    lay it out alike."""
    eager = "<style>section.suite.later{content-visibility:visible}</style></head>"
    html = tmp_path / "demo.html"
    write_atomic(html, render(demo.document()).replace("</head>", eager, 1))
    tall = (SCREEN[0], 6000)
    layout = chromium.probe(html, SELECTORS, tall)
    elements = layout["elements"]
    plots, images = elements["plots"], elements["images"]
    expected = sum(a["kind"] in ("series", "bars") for a in demo.document()["artifacts"]) + 2
    assert len(plots) == expected
    assert len(images) == 6 and all(img["loaded"] for img in images)
    assert len(elements["tables"]) == 2
    assert all(on_first_screen(box, layout) for box in plots + images)
    png = tmp_path / "demo.png"
    chromium.screenshot(html, png, tall, settle_ms=2000)
    image = pixels(png)
    for box in plots + images:
        area = region(image, box)
        assert area.size and area.std() > 10, box  # not a blank box
