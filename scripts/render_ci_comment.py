"""Render the pull request's review comment as GitHub shows it, and screenshot it.

The comment is `planets-mlops report --format github` of the two golden cases (tests/support/ci_cases.py:
the real gate on fixed outcomes). Markdown -> HTML with markdown-it-py (CommonMark + tables,
HTML kept, GitHub's alerts turned into their boxes), styled with a small GitHub-like sheet, then
headless Chromium takes the picture:

    .venv/bin/python scripts/render_ci_comment.py --out docs/images

writes ci-comment-promote.png and ci-comment-refuse.png, and the HTML pages beside them (folded
sections opened, as a reviewer clicks them). Needs Debian's chromium (`apt-get install -y chromium`).
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CSS = """
body { font-family: -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif; font-size: 14px;
  line-height: 1.5; color: #1f2328; background: #fff; margin: 0; padding: 16px; }
.comment { max-width: 900px; border: 1px solid #d1d9e0; border-radius: 6px; }
.head { background: #f6f8fa; border-bottom: 1px solid #d1d9e0; padding: 8px 16px; color: #59636e;
  border-radius: 6px 6px 0 0; }
.head b { color: #1f2328; }
.body { padding: 16px; }
h2 { font-size: 1.5em; border-bottom: 1px solid #d1d9e0b3; padding-bottom: .3em; margin-top: 0; }
table { border-collapse: collapse; margin: 0 0 16px; display: block; overflow: auto; }
th, td { border: 1px solid #d1d9e0; padding: 4px 10px; }
th { font-weight: 600; background: #f6f8fa; }
tr:nth-child(2n) td { background: #f6f8fa; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 85%; background: #818b981f;
  padding: .2em .4em; border-radius: 6px; }
a { color: #0969da; text-decoration: none; }
details { margin: 0 0 16px; } summary { cursor: pointer; margin-bottom: 8px; }
.alert { padding: 8px 16px; margin-bottom: 16px; border-left: .25em solid; }
.alert p { margin: 4px 0; } .alert ul { margin: 4px 0; padding-left: 20px; }
.alert-title { font-weight: 600; }
.alert-tip { border-color: #1a7f37; } .alert-tip .alert-title { color: #1a7f37; }
.alert-caution { border-color: #cf222e; } .alert-caution .alert-title { color: #d1242f; }
"""


def to_html(markdown: str, title: str) -> str:
    """GitHub-like HTML of the comment (alerts as boxes, folded sections open)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    body = md.render(markdown)
    body = re.sub(
        r"<blockquote>\s*<p>\[!(TIP|CAUTION)\]\s*",
        lambda m: (
            f'<div class="alert alert-{m[1].lower()}"><p class="alert-title">'
            f"{'Tip' if m[1] == 'TIP' else 'Caution'}</p><p>"
        ),
        body,
    )
    body = re.sub(r"</blockquote>", "</div>", body)
    body = body.replace("<details>", "<details open>")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body><div class='comment'><div class='head'><b>github-actions</b> "
        f"bot commented</div><div class='body'>{body}</div></div></body></html>"
    )


def screenshot(page: Path, png: Path, size: str) -> None:
    """Headless Chromium, a fresh profile, no network features."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        subprocess.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--hide-scrollbars", f"--window-size={size}",
                f"--screenshot={png}", page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )  # fmt: skip


def main() -> None:
    """Write the HTML and PNG of both cases."""
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="output folder")
    parser.add_argument("--size", default="960,1280", help="window WIDTH,HEIGHT")
    args = parser.parse_args()
    from planets_mlops.app.review import to_markdown
    from tests.support.ci_cases import review

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for case in ("promote", "refuse"):
        page = out / f"ci-comment-{case}.html"
        page.write_text(to_html(to_markdown(review(case), "github"), f"model gate: {case}"), encoding="utf-8")
        screenshot(page, out / f"ci-comment-{case}.png", args.size)
        print(out / f"ci-comment-{case}.png")


if __name__ == "__main__":
    main()
