"""Headless Chromium for the report tests: does a page render, load its images, clip no text?

``check_page`` opens a copy of the page with a small script appended that, once the page has
loaded, measures it and writes the result into the DOM, which ``--dump-dom`` prints:

- every ``<img>`` loaded (``complete`` and a natural width) and is shown at 75 % of its size or
  more (a picture squeezed further makes its labels unreadable);
- nothing is wider than the window (text cut off at the right edge, or a horizontal scroll);
- no element's content is wider than its box, and none that hides or scrolls its overflow has
  more content than room (clipped text).

``make setup`` installs Chromium (scripts/setup_debian_tools.sh); the tests skip, saying so, on a
machine where it is missing.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

WIDTH = 1280

_CHECK = """
<script>
window.addEventListener("load", () => {
  const view = document.documentElement.clientWidth;
  const images = [...document.images].map((img) => {
    const box = img.getBoundingClientRect();
    return {alt: img.alt, loaded: img.complete && img.naturalWidth > 0, natural: img.naturalWidth,
            shown: box.width, scale: img.naturalWidth ? box.width / Math.min(img.naturalWidth, view) : 0};
  });
  const clipped = [];
  for (const el of document.body.querySelectorAll("*")) {
    if (el.tagName === "SCRIPT" || el.id === "browser-check") continue;
    const style = getComputedStyle(el);
    const hides = ["hidden", "clip", "auto", "scroll"];
    const box = el.getBoundingClientRect();
    // Content wider than its box (hidden, scrolled, or spilling over), taller than a box that
    // hides or scrolls it, or a box past the window's right edge. Inline boxes have no width.
    if ((el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) ||
        (hides.includes(style.overflowY) && el.scrollHeight > el.clientHeight + 1) ||
        box.right > view + 1) {
      clipped.push({tag: el.tagName, text: (el.textContent || "").trim().slice(0, 60),
                    right: box.right, scroll: el.scrollWidth, client: el.clientWidth});
    }
  }
  const out = document.createElement("pre");
  out.id = "browser-check";
  out.textContent = JSON.stringify({
    title: document.title, images, clipped, view,
    page_width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
    text: document.body.innerText.length,
  });
  document.body.appendChild(out);
});
</script>
"""


def chromium() -> str | None:
    """The Chromium binary, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(arguments: list[str], timeout: float = 180) -> str:
    binary = chromium()
    if binary is None:
        raise RuntimeError("chromium not found: make setup installs it (scripts/setup_debian_tools.sh)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        done = subprocess.run(
            [
                binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars", f"--user-data-dir={profile}", *arguments,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        )  # fmt: skip
    return done.stdout


def markdown_page(markdown: str, title: str) -> str:
    """Markdown as a plain HTML page (CommonMark + tables, as the KFP UI renders a Markdown artifact)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    css = (
        "body{font-family:sans-serif;font-size:15px;margin:1.2em;max-width:1100px}"
        "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:3px 10px}"
        "pre{background:#f6f8fa;padding:8px;overflow-x:auto}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{css}</style></head><body>{body}</body></html>"
    )


def check_page(page: Path, width: int = WIDTH) -> dict[str, Any]:
    """Load ``page`` in headless Chromium at ``width`` px and measure it (see the module docstring).

    Returns:
        ``title``, ``images`` (alt, loaded, natural and shown width, scale), ``clipped``
        (elements whose content does not fit), ``page_width``, ``view``, ``height``, ``text``.
    """
    text = Path(page).read_text(encoding="utf-8")
    checked = text.replace("</body>", _CHECK + "</body>") if "</body>" in text else text + _CHECK
    with tempfile.TemporaryDirectory(prefix="report-check-") as folder:
        copy = Path(folder) / "page.html"
        copy.write_text(checked, encoding="utf-8")
        dom = _run([f"--window-size={width},900", "--virtual-time-budget=10000", "--dump-dom", copy.as_uri()])
    match = re.search(r'<pre id="browser-check">(.*?)</pre>', dom, re.S)
    if match is None:
        raise AssertionError(f"the check script did not run in {page}")
    return json.loads(html.unescape(match.group(1)))


def screenshot(page: Path, png: Path, width: int = WIDTH) -> Path:
    """A full-page screenshot of ``page`` at ``width`` px (its height measured first)."""
    height = min(int(check_page(page, width)["height"]) + 20, 16000)
    _run(
        [
            f"--window-size={width},{height}",
            f"--screenshot={Path(png).resolve()}",
            Path(page).resolve().as_uri(),
        ]
    )
    return Path(png)
