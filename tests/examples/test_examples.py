"""The scripts in examples/ run as a user would run them, in order (later ones use earlier outputs)."""
import subprocess
import sys

import pytest

from helpers import REPO

ORDER = ["pretrain_nano", "sft_lora", "dpo", "merge_adapter", "data_prepare", "fewshot_eval"]


def test_every_example_is_listed():
    assert sorted(ORDER) == sorted(p.stem for p in (REPO / "examples").glob("*.py"))


@pytest.mark.slow
def test_examples_run_in_order(tmp_path, shared_data):
    for name in ORDER:
        args = [sys.executable, str(REPO / "examples" / f"{name}.py"), str(tmp_path)]
        if name == "fewshot_eval":
            args.append(str(shared_data / "superglue"))
        proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
    assert (tmp_path / "merged" / "model.safetensors").exists()
    assert (tmp_path / "prepared" / "data_card.md").exists()
    assert "SuperGLUE average" in proc.stdout
