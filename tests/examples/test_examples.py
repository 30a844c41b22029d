"""The scripts in examples/ run as a user would run them, in order (later ones use earlier outputs).
In-process (runpy) so the suite does not pay six interpreter and library start-ups."""
import runpy
import sys

import pytest

from helpers import REPO

ORDER = ["pretrain_nano", "sft_lora", "dpo", "merge_adapter", "data_prepare", "fewshot_eval"]


def test_every_example_is_listed():
    assert sorted(ORDER) == sorted(p.stem for p in (REPO / "examples").glob("*.py"))


@pytest.mark.slow
def test_examples_run_in_order(tmp_path, shared_data, monkeypatch, capsys):
    for name in ORDER:
        argv = [str(REPO / "examples" / f"{name}.py"), str(tmp_path)]
        if name == "fewshot_eval":
            argv.append(str(shared_data / "superglue"))
        monkeypatch.setattr(sys, "argv", argv)
        runpy.run_path(argv[0], run_name="__main__")
    assert (tmp_path / "merged" / "model.safetensors").exists()
    assert (tmp_path / "prepared" / "data_card.md").exists()
    assert "SuperGLUE average" in capsys.readouterr().out
