"""`tunesmith demo` runs the starter pipeline and reports a before/after measure per stage."""
import pytest
import yaml

import tunesmith.demo as demo
from tunesmith.recipes import STARTER_PIPELINE


def _shrunk(run_dir):
    recipe = yaml.safe_load(STARTER_PIPELINE)
    recipe["run"]["dir"] = str(run_dir)
    for stage in recipe["stages"]:
        stage["train"].update(max_steps=4, batch_size=4, save_steps=1000)
        if stage["stage"] == "pretrain":
            stage["model"].update(layers=1, hidden=32, heads=2, kv_heads=1, intermediate=64)
            stage["tokenizer"] = {"vocab_size": 320, "train_documents": 300}
            stage["data"] = {"max_documents": 300, "block_size": 32}
            stage["run"] = {"sample_tokens": 4}
        else:
            stage["tasks"].update(train_rows=16, eval_rows=4)
    return recipe


@pytest.mark.slow
def test_demo_reports_every_stage_measure_before_and_after(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "demo_pipeline", lambda overrides=None: _shrunk(tmp_path / "demo"))
    summary = demo.run_demo()
    assert len(summary) == len(demo.MEASURES)
    assert all(b is not None and a is not None for b, a in summary.values()), summary
    out = capsys.readouterr().out
    assert "held-out exact match (add)" in out and str(tmp_path / "demo" / "3-dpo" / "model") in out.replace("\n", "")


def test_demo_overrides_apply_to_the_pipeline():
    assert demo.demo_pipeline(["--run.dir", "elsewhere"])["run"]["dir"] == "elsewhere"
    stages = [s["stage"] for s in demo.demo_pipeline()["stages"]]
    assert stages == ["pretrain", "sft", "dpo"]
