"""DPO (every TRL loss type), KTO, ORPO, SimPO on a tiny model: each runs, its loss falls, the
saved adapter loads; bad preference files give file:line errors."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from alignment._sft_fixtures import pretrained  # noqa: E402
from tunesmith.alignment.preference import dpo, kto, orpo, simpo  # noqa: E402
from tunesmith.core.errors import UserError  # noqa: E402

warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
warnings.filterwarnings("ignore", message=".*experimental.*")
TRAIN = {"dtype": "fp32", "warmup_steps": 0, "logging_steps": 1, "save_steps": 10_000, "eval_steps": 10_000,
         "max_steps": 6, "batch_size": 8, "lr": 1e-2}
TASKS = {"names": ["upper", "add"], "train_rows": 8, "eval_rows": 8}   # one batch: the same pairs every step
LOSS_TYPES = ["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return pretrained("tiny", tmp_path_factory.getbasetemp())


def _losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def _run(fn, tiny, tmp_path, **sections):
    sections.setdefault("tasks", TASKS)
    sections.setdefault("train", TRAIN)
    sections["run"] = {"dir": str(tmp_path / "run"), "sample_tokens": 0, **sections.get("run", {})}
    return fn(model={"path": str(tiny)}, **sections)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_every_dpo_loss_type_runs_and_its_loss_falls(tiny, tmp_path, loss_type):
    extra = {"robust": {"label_smoothing": 0.1}, "exo_pair": {"label_smoothing": 1e-3}}.get(loss_type, {})
    result = _run(dpo, tiny, tmp_path, dpo={"loss_type": loss_type, "max_length": 64, **extra})
    losses = _losses(result.run_dir)
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert {"before/pair_accuracy", "after/logp_margin", "eval_rewards/margins"} <= set(result.metrics)


@pytest.mark.parametrize("fn,block,method", [(dpo, "dpo", "qlora"), (dpo, "dpo", "full"), (kto, "kto", "lora"),
                                             (orpo, "orpo", "lora"), (simpo, "simpo", "lora"), (kto, "kto", "qlora")])
def test_stages_run_with_lora_qlora_full(tiny, tmp_path, fn, block, method):
    result = _run(fn, tiny, tmp_path, adapter={"method": method, "rank": 8}, **{block: {"max_length": 64}})
    losses = _losses(result.run_dir)
    assert losses[-1] < losses[0]
    assert result.metrics["after/pairs"] == 8 and (result.run_dir / "results.json").is_file()
    marker = "config.json" if method == "full" else "adapter_config.json"
    assert (result.model_path / marker).is_file()
    # real tokens counted from each stage's own batch layout (chosen_*/completion_* masks)
    logged = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    tokens = [r["tokens"] for r in logged if "tokens" in r]
    assert len(tokens) == 6 and tokens == sorted(tokens) and tokens[0] > 8 * 4
    assert result.metrics["train_tokens"] == tokens[-1]


def test_preference_file_without_rejected_is_a_clear_error(tiny, tmp_path):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(json.dumps({"prompt": "2+2?", "chosen": "4", "rejected": "5"}) + "\n"
                   + json.dumps({"prompt": "3+3?", "chosen": "6"}) + "\n")
    with pytest.raises(UserError) as e:
        _run(dpo, tiny, tmp_path, tasks={}, data={"inputs": [{"path": str(bad)}], "format": "preference"})
    assert f"{bad}:2" in str(e.value) and "rejected" in str(e.value)
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "yo"}]}) + "\n")
    with pytest.raises(UserError, match="preference pairs"):
        _run(dpo, tiny, tmp_path, tasks={}, data={"inputs": [{"path": str(chat)}]}, run={"overwrite": True})
    with pytest.raises(UserError, match="loss_type"):
        _run(dpo, tiny, tmp_path, dpo={"loss_type": "sigmoidd"}, run={"overwrite": True})
    with pytest.raises(UserError, match="label_smoothing"):
        _run(dpo, tiny, tmp_path, dpo={"loss_type": "exo_pair"}, run={"overwrite": True})
