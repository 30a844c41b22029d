"""Render a run's report.html in a real headless browser and save a screenshot.

Uses /usr/bin/chromium (Debian: `apt-get install -y chromium`) when present; installs
nothing. Network is cut off for the browser (every host resolves to nothing), so a page
that needed the network would show broken images. Exit status: 0 screenshot written,
3 browser absent (nothing checked), 1 the browser failed.

    python scripts/check_report_in_browser.py runs/nano            # writes the report first
    python scripts/check_report_in_browser.py runs/nano --out shot.png --no-write
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND")


def find_browser() -> str | None:
    return next((b for b in BROWSERS if os.access(b, os.X_OK)), shutil.which("chromium"))


def screenshot(html: Path, out: Path, size: tuple[int, int] = (1200, 1600), timeout: int = 120) -> Path:
    """Screenshot `html` at `size` into `out` (PNG) with headless chromium; returns `out`."""
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError("no chromium found (apt-get install -y chromium)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tunesmith-chromium-") as profile:
        cmd = [browser, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={out.resolve()}",
               f"--window-size={size[0]},{size[1]}", html.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "HOME": profile})
    if not out.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="screenshot path (default RUN_DIR/report.png)")
    parser.add_argument("--no-write", action="store_true", help="use the existing report.html")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=1600)
    args = parser.parse_args(argv)
    if find_browser() is None:
        print("chromium not found: nothing checked (apt-get install -y chromium)", file=sys.stderr)
        return 3
    if not args.no_write:
        from tunesmith.report import write_report

        write_report(args.run_dir)
    out = args.out or args.run_dir / "report.png"
    try:
        screenshot(args.run_dir / "report.html", out, (args.width, args.height))
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"browser check failed: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
