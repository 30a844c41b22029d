"""LoRA SFT on a base whose chat tokens were never trained: with `adapter.trainable_tokens: auto`
(the default) the adapter trains the rows of `<|im_start|>`/`<|im_end|>` and learns to end its
turn; the adapter folder stays a stock PEFT one and merges; bad token lists fail early.

Measured on the nano base (150 pretraining steps on the shipped stories: no ChatML token, and
digits only after a space, " 7", never the bare "7" an answer starts with), `add`, LoRA r16,
80 steps, lr 1e-2, batch 16; mean probability of `<|im_end|>` right after the correct answer on
the 26 held-out sums (seeds 0/1/2):
  base 0.0001 | trainable_tokens: none 0.0046 / 0.0049 / 0.0042 | auto 0.955 / 0.988 / 0.969.
Threshold 0.5: about half the lowest auto seed and 100x what LoRA reaches without the rows.
The bare digits' rows are untrained too, so held-out exact match stays 0 with LoRA here.
"""
from __future__ import annotations

import importlib
import json
import warnings
from pathlib import Path

import pytest
import torch

from alignment._sft_fixtures import pretrained  # noqa: E402
from tunesmith.alignment.preference import dpo  # noqa: E402
from tunesmith.alignment.sft import sft  # noqa: E402
from tunesmith.alignment.toy_tasks import instruction_rows  # noqa: E402
from tunesmith.core.errors import UserError  # noqa: E402
from tunesmith.data import render_messages  # noqa: E402

warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
TRAIN = {"dtype": "fp32", "warmup_steps": 5, "logging_steps": 10, "save_steps": 10_000, "eval_steps": 10_000,
         "seed": 0}
HELDOUT = instruction_rows(["add"], 26, seed=1, split="heldout")


def _answered(tok) -> list[torch.Tensor]:
    """Each held-out prompt with the assistant header and the correct answer, as token ids."""
    return [tok(render_messages(r["messages"][:1], tok, add_generation_prompt=True) + r["answer"],
                add_special_tokens=False, return_tensors="pt")["input_ids"] for r in HELDOUT]


def _last_logits(model, tok) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.stack([model(input_ids=ids).logits[0, -1] for ids in _answered(tok)])


def _im_end_probability(logits: torch.Tensor, tok) -> float:
    return logits.softmax(-1)[:, tok.convert_tokens_to_ids("<|im_end|>")].mean().item()


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """A default LoRA SFT on the nano base, plus the trained model's logits taken in memory
    (before saving), to compare with what the saved folder gives back."""
    base = pretrained("nano", tmp_path_factory.getbasetemp())
    module = importlib.import_module("tunesmith.alignment.sft")
    original, captured = module.run_stage, {}

    def spy(stage, cfg, load, build, **kw):
        def build_and_capture(loaded, run, dtype, resuming):
            training = build(loaded, run, dtype, resuming)
            after = training.after

            def after_and_capture(model):
                captured["logits"] = _last_logits(model, training.trainer.processing_class)
                return after(model) if after else {}
            training.after = after_and_capture
            return training
        return original(stage, cfg, load, build_and_capture, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, "run_stage", spy)
        result = sft(model={"path": str(base)}, adapter={"method": "lora", "rank": 16},
                     tasks={"names": ["add"], "train_rows": 80, "eval_rows": 4},
                     sft={"max_length": 64, "batching": "padding"},
                     train=dict(TRAIN, max_steps=80, batch_size=16, lr=1e-2),
                     run={"dir": str(tmp_path_factory.mktemp("sft") / "run"), "sample_tokens": 0})
    return base, result, captured["logits"]


def _stock(base: Path, adapter: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)


@pytest.mark.slow
def test_lora_sft_learns_to_end_its_turn(lora_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, result, _ = lora_run
    tok = AutoTokenizer.from_pretrained(result.model_path)
    before = _im_end_probability(_last_logits(AutoModelForCausalLM.from_pretrained(base), tok), tok)
    after = _im_end_probability(_last_logits(_stock(base, result.model_path), tok), tok)
    assert before < 0.01                                         # measured 0.0001
    assert after > 0.5, after                                    # 0.95-0.99 (docstring); 0.004 without the rows
    config = json.loads((result.model_path / "adapter_config.json").read_text())
    assert config["trainable_token_indices"] == {"model.embed_tokens": tok.convert_tokens_to_ids(
        ["<|im_start|>", "<|im_end|>"])}                         # tied head: peft ties it to these rows


@pytest.mark.slow
def test_sft_adapter_reloads_in_stock_peft_and_merges(lora_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.adapters.merge import merge

    base, result, trained_logits = lora_run
    tok = AutoTokenizer.from_pretrained(result.model_path)
    torch.testing.assert_close(_last_logits(_stock(base, result.model_path), tok), trained_logits,
                               rtol=1e-5, atol=1e-5)
    merged = AutoModelForCausalLM.from_pretrained(merge(result.model_path, tmp_path / "merged"))
    torch.testing.assert_close(_last_logits(merged, tok), trained_logits, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return pretrained("tiny", tmp_path_factory.getbasetemp())


def test_bad_trainable_tokens_fail_before_the_model_loads(tiny, tmp_path, monkeypatch):
    import tunesmith.alignment.common as common_mod

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the tokens were checked")
    monkeypatch.setattr(common_mod, "load_base", no_load)
    old = tmp_path / "run"                      # an earlier run, to be overwritten only once input is valid
    (old / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    (old / "metrics.jsonl").write_text('{"step": 5, "loss": 1.0}\n')
    common = {"model": {"path": str(tiny)}, "tasks": {"names": ["add"], "train_rows": 8, "eval_rows": 1},
              "run": {"dir": str(old), "sample_tokens": 0, "overwrite": True}}
    with pytest.raises(UserError, match=r'field "adapter.trainable_tokens" .*<\|eot_id\|>'):
        sft(adapter={"trainable_tokens": ["<|im_end|>", "<|eot_id|>"]}, **common)
    with pytest.raises(UserError, match="trainable_tokens.*LoRA methods only"):
        sft(adapter={"method": "ia3", "trainable_tokens": ["<|im_end|>"]}, **common)
    assert (old / "metrics.jsonl").exists() and (old / "checkpoints" / "checkpoint-5").is_dir()


def test_listed_token_rows_train_in_dpo_too(tiny, tmp_path):
    """Other alignment stages leave `auto` at none but train a listed token's rows (TRL's DPO
    trainer uses the same fused LM head, and its reference pass disables the rows with the adapter)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = dpo(model={"path": str(tiny)}, adapter={"method": "lora", "rank": 8, "trainable_tokens": ["<|im_end|>"]},
                 tasks={"names": ["upper"], "train_rows": 8, "eval_rows": 4}, dpo={"max_length": 64},
                 train=dict(TRAIN, max_steps=4, batch_size=8, lr=1e-2, warmup_steps=0),
                 run={"dir": str(tmp_path / "dpo"), "sample_tokens": 0})
    saved = load_file(result.model_path / "adapter_model.safetensors")
    rows = [v for k, v in saved.items() if "trainable_tokens_delta" in k]
    im_end = AutoTokenizer.from_pretrained(tiny).convert_tokens_to_ids("<|im_end|>")
    original = AutoModelForCausalLM.from_pretrained(tiny).get_input_embeddings().weight[im_end]
    assert len(rows) == 1 and rows[0].shape == (1, original.numel())
    assert not torch.allclose(rows[0][0], original)
