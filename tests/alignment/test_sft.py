"""SFT: loss masks token by token, packing without cross-example attention, LoRA/QLoRA runs,
bad input, and (slow) held-out exact match rising well above the base model's."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from alignment._sft_fixtures import pretrained  # noqa: E402
from tunesmith.alignment.common import ModelSection, load_tokenizer  # noqa: E402
from tunesmith.alignment.sft import sft, tokenize_example  # noqa: E402
from tunesmith.core.errors import UserError  # noqa: E402

warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
TRAIN = {"dtype": "fp32", "warmup_steps": 0, "logging_steps": 1, "save_steps": 10_000, "eval_steps": 10_000}
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 plus 3?"},
        {"role": "assistant", "content": "5"}, {"role": "user", "content": "Write in capitals: fox"},
        {"role": "assistant", "content": "FOX"}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return pretrained("tiny", tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def tok(tiny):
    return load_tokenizer(ModelSection(path=str(tiny)))


def _masked_text(row, tok, loss) -> tuple[str, list[int]]:
    enc = tokenize_example(row, tok, loss)
    return "".join(tok.decode([i]) for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m), enc["assistant_masks"]


def test_assistant_loss_covers_exactly_the_assistant_turns(tok):
    text, mask = _masked_text({"messages": CHAT}, tok, "assistant")
    assert text == "5<|im_end|>\nFOX<|im_end|>\n"        # content + end-of-turn, no headers, no user text
    enc = tokenize_example({"messages": CHAT}, tok, "assistant")
    ids, spans = enc["input_ids"], []
    for i, m in enumerate(mask):                           # two separate runs of loss tokens
        if m and (i == 0 or not mask[i - 1]):
            spans.append(i)
    assert len(spans) == 2
    assert tok.decode(ids[:spans[0]]).endswith("<|im_start|>assistant\n")
    assert tok.decode(ids[:spans[1]]).endswith("fox<|im_end|>\n<|im_start|>assistant\n")


def test_completion_and_full_loss(tok):
    assert _masked_text({"messages": CHAT}, tok, "completion")[0] == "FOX<|im_end|>\n"
    text, mask = _masked_text({"messages": CHAT}, tok, "full")
    assert all(mask) and text.startswith("<|im_start|>system")
    pc = {"prompt": CHAT[:4], "completion": CHAT[4:]}
    assert _masked_text(pc, tok, "completion")[0] == "FOX<|im_end|>\n"
    assert _masked_text(pc, tok, "assistant")[0] == "5<|im_end|>\nFOX<|im_end|>\n"


def test_template_that_is_not_prefix_preserving_is_rejected(tiny):
    odd = ModelSection(path=str(tiny), chat_template=(
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}"
        "{% if loop.last %} END{% endif %}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"))
    with pytest.raises(UserError, match="prefixes"):
        tokenize_example({"messages": CHAT}, load_tokenizer(odd), "assistant")


def test_packing_does_not_leak_attention_across_examples(tiny, tok):
    """The padding-free batch TRL builds for packed rows gives example B the same logits as B alone.
    (use_cache=False as in SFTTrainer.compute_loss: with a cache, transformers skips packed masking.)"""
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    a = tokenize_example({"messages": CHAT[1:3]}, tok, "assistant")["input_ids"]
    b = tokenize_example({"messages": CHAT[3:]}, tok, "assistant")["input_ids"]
    batch = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=True)(
        [{"input_ids": a}, {"input_ids": b}])
    assert batch["position_ids"][0, len(a)] == 0                     # positions restart at B
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                       use_cache=False).logits[0, len(a):]
        alone = model(input_ids=torch.tensor([b])).logits[0]
        leaky = model(input_ids=batch["input_ids"], use_cache=False).logits[0, len(a):]  # plain causal mask over both
    torch.testing.assert_close(packed, alone, atol=1e-5, rtol=1e-4)
    assert (leaky - alone).abs().max() > 1e-3                         # the check can fail


def config_attention(folder: Path):
    return json.loads((folder / "config.json").read_text()).get("_attn_implementation")


def _run(tiny, tmp_path, **sections):
    sections.setdefault("tasks", {"names": ["upper", "add"], "train_rows": 64, "eval_rows": 8})
    sections.setdefault("train", dict(TRAIN, max_steps=8, batch_size=8, lr=1e-2))
    sections.setdefault("sft", {"max_length": 64})
    sections["run"] = {"dir": str(tmp_path / "run"), "sample_tokens": 0, **sections.get("run", {})}
    return sft(model={"path": str(tiny)}, **sections)


def _losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.mark.parametrize("method,batching", [("lora", "packing"), ("qlora", "padding"), ("lora", "padding_free"),
                                            ("lora", "packed_rows"), ("full", "auto")])
def test_sft_runs_and_loss_falls(tiny, tmp_path, method, batching, monkeypatch):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("TUNESMITH_CACHE_DIR", str(tmp_path / "cache"))
    train = dict(TRAIN, max_steps=8, batch_size=8, lr=1e-2, dtype="auto" if batching == "auto" else "fp32")
    result = _run(tiny, tmp_path, adapter={"method": method, "rank": 8}, sft={"max_length": 64, "batching": batching},
                  train=train)
    losses = _losses(result.run_dir)
    assert len(losses) == 8 and sum(losses[-2:]) < sum(losses[:2])
    env = json.loads((result.run_dir / "environment.json").read_text())
    assert env["batching"]["choice"] == (batching if batching != "auto" else env["batching"]["choice"])
    if batching == "auto":   # the measured choice and its cost, and the dtype probe's, are in the run record
        rates = env["batching"]["tokens_per_s"]
        assert set(rates) == {"packed_rows", "padding"} and env["batching"]["choice"] == max(rates, key=rates.get)
        assert env["dtype"] == env["dtype_probe"]["dtype"] and env["dtype_probe"]["seconds"]["fp32"] > 0
        ckpt = env["activation_checkpointing"]   # auto: measured before the layouts were timed; far under 256 MiB
        assert ckpt["requested"] == "auto" and ckpt["enabled"] is False
        assert 0 < ckpt["activations_mb"] < 256 and ckpt["state_mb"] > 0 and ckpt["measured_in"] == "fp32"
        assert env["heap"] == {"mmap_threshold": 32 * 2 ** 20, "trim_threshold": 2 ** 31 - 1}  # freed memory kept
        assert config_attention(result.model_path) is None               # the saved model names no tunesmith attention
        return
    assert {"before/exact_match", "after/exact_match/upper", "train_tokens"} <= set(result.metrics)
    assert (result.run_dir / "results.json").is_file() and (result.model_path / "adapter_config.json").is_file()
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny), result.model_path)


@pytest.mark.parametrize("adapter", [{"method": "lora", "optimizer": "adamw_8bit"}, {"method": "lora_fa"}])
def test_adapter_optimizer_is_the_one_that_trains(tiny, tmp_path, adapter, monkeypatch):
    """adapter.optimizer and method lora_fa hold in every stage (the lifecycle hands the trainer the
    adapter's optimizer), not only in finetune: the trainer steps that optimizer, and LoRA-FA keeps A."""
    from safetensors.torch import load_file

    import tunesmith.lifecycle as lifecycle

    seen, real = {}, lifecycle.use_adapter_optimizer

    def spy(trainer, *args):
        real(trainer, *args)
        seen["optimizer"] = type(trainer.optimizer).__name__
        seen["A"] = {n.replace(".default", ""): p.detach().clone() for n, p in trainer.model.named_parameters()
                     if "lora_A" in n}
    monkeypatch.setattr(lifecycle, "use_adapter_optimizer", spy)
    result = _run(tiny, tmp_path, adapter={**adapter, "rank": 4}, sft={"max_length": 64})
    assert seen["optimizer"] == ("AdamW8bit" if adapter["method"] == "lora" else "LoraFAOptimizer")
    trained = load_file(result.model_path / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in trained.items() if "lora_B" in k)  # B starts at zero: it trained
    a_moved = [torch.equal(trained[k], v) is False for k, v in seen["A"].items()]
    assert a_moved and (any(a_moved) if adapter["method"] == "lora" else not any(a_moved))


def test_sft_bad_inputs(tiny, tmp_path):
    with pytest.raises(UserError, match="no training data"):
        _run(tiny, tmp_path, tasks={})
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "hi", "chosen": "a", "rejected": "b"}) + "\n")
    with pytest.raises(UserError, match="trains on instruction") as e:
        _run(tiny, tmp_path, data={"inputs": [{"path": str(pairs)}]}, run={"overwrite": True})
    assert str(pairs) in str(e.value)
    with pytest.raises(UserError, match="sft.batching"):
        _run(tiny, tmp_path, sft={"batching": "bucket"})
