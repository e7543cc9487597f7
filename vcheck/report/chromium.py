"""Open a report in headless Chromium as a person would: screenshot it, and read where things
ended up after layout (what is on the first screen, what was painted, how long it took).

Used by vcheck's browser tests and the rendering benchmark; needs Debian's ``chromium``
(``apt-get install -y chromium``; ``scripts/setup.sh`` installs it). Every call starts a
fresh browser with its own profile folder and no network services, so nothing is fetched.

Public names: :func:`find_chromium`, :func:`screenshot`, :func:`probe`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)
_PROBE_ID = "vcheck-probe"


def find_chromium() -> str | None:
    """The Chromium executable on PATH (Debian's ``chromium`` first), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium not found; install it with apt-get install -y chromium")
    with tempfile.TemporaryDirectory(prefix="vcheck-chromium-") as profile:
        return subprocess.run(
            [chromium, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def screenshot(
    html: Path,
    png: Path,
    size: tuple[int, int] = (1280, 800),
    timeout: float = 120,
    settle_ms: int | None = None,
) -> float:
    """Screenshot of ``html`` in a window of ``size`` (the first screen); wall-clock seconds
    from starting the browser to the PNG on disk. ``settle_ms`` lets the page run that much
    virtual time first (tests: what the page shows once settled, not its first frame)."""
    start = time.perf_counter()
    settle = [f"--virtual-time-budget={settle_ms}"] if settle_ms else []
    proc = _run(
        [
            f"--window-size={size[0]},{size[1]}",
            *settle,
            f"--screenshot={png}",
            Path(html).resolve().as_uri(),
        ],
        timeout,
    )
    elapsed = time.perf_counter() - start
    if not Path(png).is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr}")
    return elapsed


_SCRIPT = """
<script>
(() => {
  const parsed = performance.now();
  window.addEventListener("load", () => {
    const out = {parsed, viewport: {w: innerWidth, h: innerHeight}, elements: {}};
    document.body.getBoundingClientRect();  // force layout of the first screen
    out.laid_out = performance.now();
    const nav = performance.getEntriesByType("navigation")[0];
    out.dom_content_loaded = nav.domContentLoadedEventEnd;
    out.load = nav.loadEventStart;
    for (const [name, selector] of Object.entries(SELECTORS)) {
      out.elements[name] = [...document.querySelectorAll(selector)].slice(0, 50).map(el => {
        const r = el.getBoundingClientRect();
        return {x: r.x, y: r.y, w: r.width, h: r.height,
                text: el.textContent.slice(0, 500),
                loaded: el.tagName === "IMG" ? (el.complete && el.naturalWidth > 0) : null};
      });
    }
    const pre = document.createElement("pre");
    pre.id = "PROBE_ID";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  });
})();
</script>
"""


def probe(
    html: Path,
    selectors: Mapping[str, str],
    size: tuple[int, int] = (1280, 800),
    timeout: float = 120,
) -> dict[str, Any]:
    """Lay ``html`` out in a window of ``size`` and return, once loaded: for each name in
    ``selectors``, the boxes (viewport CSS pixels) and text of the first 50 matches; and
    timings from navigation start in ms (``parsed``: the end of the document was parsed,
    ``dom_content_loaded``, ``load``, ``laid_out``: the page was laid out after load).

    The page gets a small script appended (on a copy), which records all this after the
    load event and changes nothing above it.
    """
    text = Path(html).read_text(encoding="utf-8")
    script = _SCRIPT.replace("SELECTORS", json.dumps(dict(selectors))).replace(
        "PROBE_ID", _PROBE_ID
    )
    index = text.rfind("</body>")
    probed = text[:index] + script + text[index:] if index >= 0 else text + script
    with tempfile.TemporaryDirectory(prefix="vcheck-probe-") as tmp:
        copy = Path(tmp) / Path(html).name
        copy.write_text(probed, encoding="utf-8")
        proc = _run([f"--window-size={size[0]},{size[1]}", "--dump-dom", copy.as_uri()], timeout)
    match = re.search(rf'<pre id="{_PROBE_ID}">(.*?)</pre>', proc.stdout, flags=re.S)
    if match is None:
        raise RuntimeError(f"chromium returned no layout (exit {proc.returncode}): {proc.stderr}")
    from html import unescape

    return json.loads(unescape(match.group(1)))
