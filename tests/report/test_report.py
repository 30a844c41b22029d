"""write_report on real run directories: content, self-contained HTML, stages, bad input."""
from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.core.errors import UserError
from tunesmith.core.rundir import RunDir
from tunesmith.report import log_peak_memory, write_report


def test_pipeline_report_has_every_stage_and_its_numbers(pipeline_copy):
    log_peak_memory(RunDir(pipeline_copy / "2-sft"), step=3)
    result = write_report(pipeline_copy)
    md = result.markdown.read_text()
    pre = json.loads((pipeline_copy / "1-pretrain" / "results.json").read_text())["metrics"]

    assert [s.name for s in result.info.stages] == ["1-pretrain", "2-sft", "3-eval"]
    for stage in ("1-pretrain", "2-sft", "3-eval"):
        assert f"## Stage: {stage}" in md
    assert f"| 1-pretrain | eval_loss {pre['eval_loss']:.4g}, perplexity {pre['perplexity']:.4g}" in md
    assert f"| `eval_loss` | {pre['eval_loss']:.4g} |" in md
    # the eval stage's own Markdown table, rows verbatim
    eval_rows = (pipeline_copy / "3-eval" / "results.md").read_text().splitlines()[2:]
    for row in eval_rows:
        assert row in md
    assert "| 3-eval | superglue fewshot: RTE 62.5, CB 37.5 (average 50.0) |" in md
    # memory logged by the helper, the SFT data card, the config
    peak = max(json.loads(l).get("peak_rss_mb", 0) for l in
               (pipeline_copy / "2-sft" / "metrics.jsonl").read_text().splitlines())
    assert f"| peak resident memory (MiB, this process) | {peak:.4g} |" in md
    assert "#### Data card" in md and "| read | | 32 |" in md
    assert "block_size: 32" in md
    # plots: one set per training stage, linked relatively, files present
    names = {p.name for p in result.plot_files}
    for stage in ("1-pretrain", "2-sft"):
        assert {f"{stage}-{k}.png" for k in ("loss", "lr", "grad_norm", "throughput")} <= names
    assert not any(n.startswith("3-eval") for n in names)
    for p in result.plot_files:
        assert f"(plots/{p.name})" in md and p.is_file()


def test_html_is_self_contained_and_embeds_the_same_pngs(pipeline_copy):
    result = write_report(pipeline_copy / "1-pretrain")
    page = result.html.read_text()
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == len(result.plot_files) == 4
    for src, path in zip(srcs, result.plot_files):
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == path.read_bytes()
    # nothing to fetch: no remote URL in any src/href, no <link>/<script>
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page and "<link" not in page
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page


def test_text_from_the_run_is_escaped_in_html(pipeline_copy):
    run = pipeline_copy / "1-pretrain"
    results = json.loads((run / "results.json").read_text())
    results["sample"] = "<script>alert(1)</script> ``` fence"
    (run / "results.json").write_text(json.dumps(results))
    page = write_report(run).html.read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; ``` fence" in page


def test_eval_only_run_has_a_table_and_no_plots(pipeline_copy):
    result = write_report(pipeline_copy / "3-eval")
    md = result.markdown.read_text()
    assert result.plot_files == [] and not (pipeline_copy / "3-eval" / "plots").exists()
    assert "## Evaluation" in md and "| RTE | 16 | acc 62.5 | 62.5 |" in md and "## Curves" not in md


def test_rewriting_the_report_replaces_it(pipeline_copy):
    run = pipeline_copy / "1-pretrain"
    write_report(run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 11, "loss": 1.25}) + "\n")
    result = write_report(run)
    assert result.plots[""][0].series["loss"][1][-1] == 1.25


def test_bad_run_directories(tmp_path):
    with pytest.raises(UserError, match="run directory not found"):
        write_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a run directory"):
        write_report(tmp_path / "empty")
    run = tmp_path / "broken"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo\n')
    with pytest.raises(UserError) as e:
        write_report(run)
    assert "metrics.jsonl:2:" in str(e.value) and "delete the broken line" in str(e.value)
    assert not (run / "report.html").exists()


def test_peak_memory_sees_an_allocation():
    """In a child of this (big) pytest process, touching 200 MiB raises the peak by about that
    much: the child's own peak, not the parent's (getrusage alone would report the parent's)."""
    code = ("from tunesmith.report.memory import peak_memory\n"
            "a = peak_memory()['peak_rss_mb']\n"
            "block = bytearray(200 * 2**20)\n"
            "block[::4096] = b'x' * len(block[::4096])\n"  # touch every page
            "b = peak_memory()['peak_rss_mb']\n"
            "print(b - a)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert 170 <= float(out.stdout) <= 215   # the import may have peaked a little above the current RSS
