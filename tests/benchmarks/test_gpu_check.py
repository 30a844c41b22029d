"""benchmarks/gpu_check.py: `--tiny` runs every section on the CPU and measures numbers, so the GPU check
cannot rot between the runs on a GPU; a failing section is reported in one line and the others go on."""
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
_spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = sys.modules["gpu_check"] = importlib.util.module_from_spec(_spec)  # its dataclass looks itself up
_spec.loader.exec_module(gpu_check)


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_tiny_runs_every_section_and_measures(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    s = report["sections"]
    assert list(s) == list(gpu_check.SECTIONS)
    skipped = [n for n, r in s.items() if "skipped" in r]
    assert not skipped, {n: s[n]["skipped"] for n in skipped}

    assert s["attention"]["attn_implementation"] in ("sdpa", "eager", "flash_attention_2")
    assert any("scaled_dot_product" in k or "flash" in k for k in s["attention"]["kernels"])

    (run,) = s["pretrain"]["parts"]
    assert run["preset"] == "nano" and run["params"] > 100_000
    assert _positive(run["tokens_per_s"]) and _positive(run["mfu"]["measured"])
    assert run["step_s"] == pytest.approx(run["batch"] * run["block"] / run["tokens_per_s"])

    lora, qlora = s["adapters"]["parts"]
    assert lora["method"] == "lora" and lora["via"] == "tunesmith.adapters" and _positive(lora["step_s"])
    assert 0 < lora["trainable"] < s["adapters"]["params"]  # only the adapter trains
    # bitsandbytes runs 4-bit layers on the CPU (>= 0.45); if a release stops, the reason is recorded
    assert _positive(qlora.get("step_s")) or qlora["skipped"]

    sft = s["sft"]
    assert _positive(sft["trl"]["tokens_per_s"]) and _positive(sft["tunesmith"]["tokens_per_s"])
    assert 0 < sft["trl"]["padding_fraction"] < 1  # TRL's padded batches; tunesmith packs
    assert sft["ratio"] == pytest.approx(sft["tunesmith"]["tokens_per_s"] / sft["trl"]["tokens_per_s"])

    table = proc.stdout[proc.stdout.index("| check | setting | result |"):]
    assert len([line for line in table.splitlines() if line.startswith("| ")]) == 1 + 5  # header + rows
    assert "torch " + report["env"]["torch"] in proc.stdout and "trl " in proc.stdout


def test_a_failing_section_is_one_line_and_the_rest_go_on(capsys):
    def broken():
        raise ImportError("No module named 'bitsandbytes'")

    result = gpu_check.run_section("adapters", broken)
    assert result["skipped"] == "ImportError: No module named 'bitsandbytes'"
    assert capsys.readouterr().out == "section adapters skipped: ImportError: No module named 'bitsandbytes'\n"
    assert gpu_check.run_section("attention", lambda: {"rows": [["a", "b", "c"]]})["seconds"] >= 0
    late = gpu_check.run_section("sft", lambda: {}, budget_s=1.0, started=-10.0)
    assert late["skipped"].startswith("time guard")


def test_markdown_table_lists_parts_and_skips():
    report = {"tiny": True, "total_s": 3.0, "env": {"date": "d", "gpu": "g", "python": "3",
                                                    **{k: "1" for k in gpu_check.LIBS}},
              "sections": {"pretrain": {"parts": [{"rows": [["pretrain MFU base", "s", "r"]]},
                                                  {"name": "pretrain MFU 1b", "skipped": "OutOfMemoryError: x"}]},
                           "sft": {"name": "sft", "skipped": "ImportError: trl"}}}
    lines = gpu_check.markdown(report).splitlines()
    assert lines[-3:] == ["| pretrain MFU base | s | r |", "| pretrain MFU 1b |  | skipped: OutOfMemoryError: x |",
                          "| sft |  | skipped: ImportError: trl |"]
