"""Stages chain on what the previous one wrote: an SFT LoRA adapter folder (or its run directory)
is a model for dpo, eval, perplexity, distillation and continued training; `model.adapter: merge`
(default) trains a new adapter on the merged SFT model, `continue` trains the same adapter further.
Every adapter records an absolute base, so stock PEFT loads it from any directory."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch

from alignment._sft_fixtures import pretrained
from helpers import run_cli_here
from tunesmith.alignment.preference import dpo
from tunesmith.alignment.sft import sft
from tunesmith.core.errors import UserError

warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
TRAIN = {"dtype": "fp32", "warmup_steps": 0, "logging_steps": 1, "save_steps": 10_000, "eval_steps": 10_000,
         "max_steps": 2, "batch_size": 4, "lr": 1e-2}
TASKS = {"names": ["add"], "train_rows": 8, "eval_rows": 4, "max_new_tokens": 2}


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory) -> Path:
    """An SFT run with the default adapter (LoRA), started from a relative path as a user would."""
    root = tmp_path_factory.mktemp("chain")
    base = pretrained("tiny", tmp_path_factory.getbasetemp())
    cwd = os.getcwd()
    os.chdir(base.parent.parent)
    try:
        sft(model={"path": os.path.relpath(base)}, tasks=TASKS, train=TRAIN, sft={"max_length": 64},
            run={"dir": str(root / "sft"), "sample_tokens": 0})
    finally:
        os.chdir(cwd)
    return root / "sft"


def _logits(model, ids=torch.tensor([[1, 5, 9, 11]])) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_sft_adapter_records_an_absolute_base_that_stock_peft_loads_from_anywhere(sft_run, tmp_path, monkeypatch):
    from peft import AutoPeftModelForCausalLM

    recorded = json.loads((sft_run / "model" / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(recorded).is_absolute() and (Path(recorded) / "config.json").is_file()
    monkeypatch.chdir(tmp_path)
    assert AutoPeftModelForCausalLM.from_pretrained(str(sft_run / "model")) is not None


def test_dpo_on_the_sft_adapter_merges_it_once_and_trains_a_new_adapter_on_that(sft_run, tmp_path):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    from tunesmith.adapters.artifacts import load_adapter

    r = dpo(model={"path": str(sft_run / "model")}, tasks=TASKS, train=TRAIN, dpo={"max_length": 64},
            run={"dir": str(tmp_path / "dpo"), "sample_tokens": 0})
    merged = sft_run / "merged"
    assert (merged / "config.json").is_file()
    # the merged folder is the SFT model: base + adapter
    sft_model = load_adapter(sft_run / "model").eval()
    torch.testing.assert_close(_logits(AutoModelForCausalLM.from_pretrained(merged)), _logits(sft_model),
                               atol=1e-4, rtol=0)
    recorded = json.loads((r.model_path / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert recorded == str(merged.resolve())
    assert AutoPeftModelForCausalLM.from_pretrained(str(r.model_path)) is not None
    stamp = (merged / "config.json").stat().st_mtime
    dpo(model={"path": str(sft_run)}, tasks=TASKS, train=TRAIN, dpo={"max_length": 64},   # the run directory
        run={"dir": str(tmp_path / "dpo2"), "sample_tokens": 0})
    assert (merged / "config.json").stat().st_mtime == stamp   # reused, not merged again


def test_continue_trains_the_same_adapter_on_its_own_base(sft_run, tmp_path):
    from tunesmith.adapters.artifacts import load_adapter

    before = _logits(load_adapter(sft_run / "model").eval())
    r = sft(model={"path": str(sft_run), "adapter": "continue"}, tasks=TASKS, train=TRAIN, sft={"max_length": 64},
            run={"dir": str(tmp_path / "more"), "sample_tokens": 0})
    sft_cfg = json.loads((sft_run / "model" / "adapter_config.json").read_text())
    cfg = json.loads((r.model_path / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == sft_cfg["base_model_name_or_path"]   # the original base
    assert (cfg["r"], cfg["target_modules"]) == (sft_cfg["r"], sft_cfg["target_modules"])
    after = _logits(load_adapter(r.model_path).eval())
    assert (after - before).abs().max() > 1e-3   # trained further


def test_dpo_continuing_an_adapter_uses_a_frozen_copy_of_it_as_reference(sft_run, tmp_path):
    from tunesmith.alignment.preference import DPOConfig, _reference
    from tunesmith.core.config import coerce

    cfg = coerce(DPOConfig, {"model": {"path": str(sft_run), "adapter": "continue"}})
    assert _reference("auto", cfg) == "copy"
    r = dpo(model={"path": str(sft_run), "adapter": "continue"}, tasks=TASKS, train=TRAIN, dpo={"max_length": 64},
            run={"dir": str(tmp_path / "dpo-c"), "sample_tokens": 0})
    assert {"before/pair_accuracy", "after/pair_accuracy"} <= set(r.metrics)
    assert (r.model_path / "adapter_config.json").is_file()


def test_perplexity_and_eval_take_the_adapter_folder(sft_run, tmp_path, capsys):
    (tmp_path / "held.txt").write_text("\n\n".join(f"Tom saw {i} birds." for i in range(6)))
    proc = run_cli_here(capsys, "eval", "perplexity", "--model", str(sft_run / "model"), "--text",
                        str(tmp_path / "held.txt"), "--block-size", "16", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["perplexity"] > 1


def test_a_prompt_tuning_adapter_cannot_be_merged_and_says_what_to_do(tmp_path):
    base = pretrained("tiny", tmp_path.parent)
    r = sft(model={"path": str(base)}, adapter={"method": "prompt_tuning", "num_virtual_tokens": 4}, tasks=TASKS,
            train=TRAIN, sft={"max_length": 64}, run={"dir": str(tmp_path / "pt"), "sample_tokens": 0})
    with pytest.raises(UserError, match=r"prompt_tuning adapter.*model.adapter: continue"):
        dpo(model={"path": str(r.model_path)}, tasks=TASKS, train=TRAIN, run={"dir": str(tmp_path / "d")})
    assert not (tmp_path / "d").exists()
