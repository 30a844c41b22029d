"""`tunesmith init`: starter recipes that the stages accept, and a pipeline that `run` executes."""
import pytest
import yaml

from helpers import run_cli
import tunesmith.demo as demo
from tunesmith.core.config import load_config
from tunesmith.recipes import DATA_CONFIG, starter_recipe
from tunesmith.stages import STAGES, load


@pytest.mark.parametrize("stage", [*STAGES, "data"])
def test_starter_recipe_validates_as_the_stage_config(stage, tmp_path):
    text = starter_recipe(stage)
    assert "#" in text  # commented
    path = tmp_path / "r.yaml"
    path.write_text(text)
    cls = STAGES[stage].config_class() if stage in STAGES else load(DATA_CONFIG)
    cfg = load_config(cls, path)
    assert cfg.model_dump() == load_config(cls, None, yaml.safe_load(text)).model_dump()


@pytest.mark.slow
def test_init_run_writes_a_pipeline_that_runs_and_the_demo_reports_it(tmp_path, monkeypatch, capsys):
    out = tmp_path / "pipeline.yaml"
    proc = run_cli("init", "run", "-o", str(out))
    assert proc.returncode == 0 and out.exists(), proc.stderr
    assert run_cli("init", "run", "-o", str(out)).returncode == 2  # never overwrites silently
    recipe = yaml.safe_load(out.read_text())
    recipe["run"]["dir"] = str(tmp_path / "pipe")
    small = {"pretrain": {"max_steps": 6, "batch_size": 4}, "sft": {"max_steps": 2, "batch_size": 4},
             "dpo": {"max_steps": 2, "batch_size": 4}}
    for stage in recipe["stages"]:
        stage["train"].update(small[stage["stage"]])
        if stage["stage"] == "pretrain":
            stage["model"].update({"layers": 1, "hidden": 32, "heads": 2, "kv_heads": 1, "intermediate": 64})
            stage["tokenizer"] = {"vocab_size": 320, "train_documents": 300}
            stage["data"] = {"max_documents": 300, "block_size": 32}
        else:
            stage["tasks"].update({"train_rows": 16, "eval_rows": 4})
    out.write_text(yaml.safe_dump(recipe))
    proc = run_cli("run", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "pipe" / "3-dpo" / "model" / "config.json").exists()
    # `tunesmith demo` is this starter pipeline: on a finished run directory it skips every stage
    # and prints the before/after table, so its metric names are checked without training again
    monkeypatch.setattr(demo, "demo_pipeline", lambda overrides=None: recipe)
    summary = demo.run_demo()
    assert len(summary) == len(demo.MEASURES)
    assert all(b is not None and a is not None for b, a in summary.values()), summary
    assert "held-out exact match (add)" in capsys.readouterr().out
