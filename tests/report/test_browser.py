"""The HTML report in a real headless browser (Debian chromium); skipped where it is absent."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "check_report_in_browser.py"
_spec = importlib.util.spec_from_file_location("check_report_in_browser", SCRIPT)
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)
find_browser = script.find_browser


@pytest.mark.slow  # ~15 s: chromium start-up and render
@pytest.mark.skipif(find_browser() is None, reason="chromium is not installed")
def test_report_renders_in_chromium_with_its_plots(pipeline_copy, tmp_path):
    run = pipeline_copy / "1-pretrain"
    shot = tmp_path / "shot.png"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(run), "--out", str(shot)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1200, 1600)
        img = np.asarray(im.convert("RGB")).astype(int)
    # the embedded loss plot was decoded and drawn: its two line colors cover many pixels
    for color in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)):
        hits = (np.abs(img - np.array(color)).sum(axis=-1) < 30).sum()
        assert hits > 200, (color, hits)
    # page text rendered (dark pixels in the heading area)
    assert (img[:150].sum(axis=-1) < 200).sum() > 500


def test_script_reports_a_missing_browser(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(script, "find_browser", lambda: None)
    assert script.main([str(tmp_path)]) == 3
    assert "chromium not found" in capsys.readouterr().err
