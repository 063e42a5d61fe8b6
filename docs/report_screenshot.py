"""Opens a ``report.html`` in headless Chromium as a user would, checks every plot loaded, and
takes a screenshot.

Usage::

    python docs/report_screenshot.py corrotune-results/ablation_tiny/report/report.html \
        --png docs/report_screenshot.png

Prints JSON: ``{"images": N, "loaded": N, "png": path, "png_bytes": size}`` and exits 1 when an
image did not load. Needs Chromium (Debian: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHECK = """<script>window.addEventListener('load', () => {
  const images = [...document.images];
  document.body.setAttribute('data-images', images.length);
  document.body.setAttribute('data-loaded', images.filter(i => i.complete && i.naturalWidth > 0).length);
});</script>"""
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=10000"]


def chromium() -> str | None:
    """The Chromium executable, if one is installed."""
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def loaded_images(html: Path, browser: str) -> tuple[int, int]:
    """``(loaded, total)`` images of the page after the browser loaded it."""
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "page.html"
        page.write_text(html.read_text().replace("</body>", CHECK + "</body>"))
        dom = subprocess.run([browser, *FLAGS, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    total = re.search(r'data-images="(\d+)"', dom)
    loaded = re.search(r'data-loaded="(\d+)"', dom)
    if not total or not loaded:
        raise RuntimeError(f"the browser did not finish loading {html}")
    return int(loaded.group(1)), int(total.group(1))


def screenshot(html: Path, png: Path, browser: str, width: int = 1280, height: int = 1700) -> int:
    """Writes a ``width`` x ``height`` screenshot of the top of the page as a palette PNG; returns its size."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "shot.png"
        subprocess.run([browser, *FLAGS, f"--window-size={width},{height}", f"--screenshot={raw}", html.resolve().as_uri()],
                       capture_output=True, timeout=120, check=True)
        png.parent.mkdir(parents=True, exist_ok=True)
        Image.open(raw).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)
    return png.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("--png", type=Path, help="Write a screenshot here.")
    parser.add_argument("--height", type=int, default=1700)
    args = parser.parse_args()
    browser = chromium()
    if browser is None:
        print("chromium not found; install it (Debian: apt-get install -y chromium)", file=sys.stderr)
        return 2
    loaded, total = loaded_images(args.html, browser)
    result = {"images": total, "loaded": loaded}
    if args.png:
        result.update(png=str(args.png), png_bytes=screenshot(args.html, args.png, browser, height=args.height))
    print(json.dumps(result))
    return 0 if loaded == total and total > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
