"""How fast a big report renders and paints: a synthetic run with 5,000 checks (every kind of
picture included), rendered by vcheck and opened in headless Chromium, side by side with a
one-line page in the same run.

Prints:
1. the rendering time in Python (document -> HTML, figures included) and the page's size;
2. in Chromium, from navigation start (medians of --reps loads): the end of the document
   parsed, the load event, and the first screen laid out after load, an upper bound of first
   paint (all in-page ``performance.now()``); and the wall-clock time of a whole headless
   screenshot (browser start to PNG) of the report minus that of the one-line page, which is
   what the report itself costs up to painted pixels.

Usage: .venv/bin/python benchmarks/bench_report.py [--checks 5000] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from vcheck.report import chromium, demo
from vcheck.report.document import write_atomic
from vcheck.report.html import render

SCREEN = (1280, 800)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    if chromium.find_chromium() is None:
        raise SystemExit("chromium is not installed: apt-get install -y chromium")
    doc = demo.document(args.checks, failing=1)
    start = time.perf_counter()
    html = render(doc, 1.0)
    t_render = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        page, blank = Path(tmp) / "report.html", Path(tmp) / "blank.html"
        write_atomic(page, html)
        write_atomic(blank, "<!DOCTYPE html><html><body><p>vcheck</p></body></html>\n")
        probes, shots, blanks = [], [], []
        for _ in range(args.reps):  # interleaved, so load drifts hit both pages alike
            probes.append(chromium.probe(page, {"verdict": "#verdict"}, SCREEN))
            shots.append(chromium.screenshot(page, Path(tmp) / "r.png", SCREEN))
            blanks.append(chromium.screenshot(blank, Path(tmp) / "b.png", SCREEN))
    checks = len(doc["checks"])
    figures = len(doc["artifacts"]) + 2
    print(
        f"report with {checks:,} checks and {figures} pictures: rendered in {t_render:.2f} s "
        f"(Python), {len(html) / 1e6:.2f} MB of HTML"
    )

    def median(key: str) -> float:
        return statistics.median(p[key] for p in probes) / 1000

    shot, base = statistics.median(shots), statistics.median(blanks)
    print(
        f"headless Chromium, medians of {args.reps}: document parsed at {median('parsed'):.2f} s, "
        f"load event at {median('load'):.2f} s, first screen laid out at "
        f"{median('laid_out'):.2f} s (first paint is at most this)"
    )
    print(
        f"headless screenshot, browser start to PNG: report {shot:.2f} s, one-line page "
        f"{base:.2f} s, the report's own cost {shot - base:.2f} s"
    )
    verdict = probes[0]["elements"]["verdict"][0]
    print(f"verdict badge at y={verdict['y']:.0f} px: {verdict['text']} on the first screen")


if __name__ == "__main__":
    main()
