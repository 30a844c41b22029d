"""train.dtype auto: the decision from timed steps (slow bf16 bails out after one step; memory
weighs in), the cache per machine and key, and the probe on a real model leaving no trace."""
from __future__ import annotations

import time

import pytest
import torch

from tunesmith.core.device import cached, decide, measure_dtype, pick_dtype, probe_dtypes


def timed_work(costs: dict[str, int], memory: dict[str, float] | None = None):
    """A step whose time is measured, not declared: `costs[dtype]` rounds of the same matmul."""
    a = torch.randn(96, 96)
    calls = {"fp32": 0, "bf16": 0}

    def step(dtype: str) -> tuple[float, float]:
        calls[dtype] += 1
        start = time.perf_counter()
        for _ in range(costs[dtype]):
            a @ a
        return time.perf_counter() - start, (memory or {}).get(dtype, 1e6)
    return step, calls


def test_a_much_slower_bf16_is_refused_after_one_step():
    """AVX2-only CPUs: bf16 ~100x slower; one bf16 step decides."""
    step, calls = timed_work({"fp32": 20, "bf16": 2000})
    out = probe_dtypes(step)
    assert out["dtype"] == "fp32" and out["bailed_out"] and calls["bf16"] == 1


def test_a_much_faster_bf16_is_taken():
    step, calls = timed_work({"fp32": 400, "bf16": 40})
    out = probe_dtypes(step)
    assert out["dtype"] == "bf16" and calls["fp32"] == calls["bf16"] >= 2
    assert out["seconds"]["fp32"] > 3 * out["seconds"]["bf16"]


def test_memory_weighs_in():
    # 4x faster at 1.3x the memory: bf16; 1.1x faster at the same memory, or 1.4x faster at 2x: fp32
    assert decide({"fp32": 4.0, "bf16": 1.0}, {"fp32": 100, "bf16": 130}) == "bf16"
    assert decide({"fp32": 1.1, "bf16": 1.0}, {"fp32": 100, "bf16": 100}) == "fp32"
    assert decide({"fp32": 1.4, "bf16": 1.0}, {"fp32": 100, "bf16": 200}) == "fp32"
    # only bf16's activations fit: bf16 even when it is no faster
    assert decide({"fp32": 1.0, "bf16": 1.2}, {"fp32": 300, "bf16": 150}, available=200) == "bf16"


def test_decisions_are_cached_per_kind_and_key(tmp_path):
    path, runs = tmp_path / "probes.json", []

    def compute():
        runs.append(1)
        return {"dtype": "fp32"}
    first = cached("dtype", {"shape": [8, 512]}, compute, path)
    again = cached("dtype", {"shape": [8, 512]}, compute, path)
    other = cached("dtype", {"shape": [8, 256]}, compute, path)
    assert (first["cached"], again["cached"], other["cached"]) == (False, True, False) and len(runs) == 2
    path.write_text("not json")                      # a broken cache is recomputed, not fatal
    assert cached("dtype", {"shape": [8, 512]}, compute, path)["cached"] is False


def test_probe_on_a_model_leaves_no_trace(tmp_path, monkeypatch):
    from transformers import LlamaConfig, LlamaForCausalLM

    monkeypatch.setenv("TUNESMITH_CACHE_DIR", str(tmp_path))
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    ids = torch.randint(0, 64, (2, 16))
    state = torch.random.get_rng_state()
    out = measure_dtype(model, {"input_ids": ids, "labels": ids})
    assert torch.equal(torch.random.get_rng_state(), state)            # training's random stream is untouched
    assert all(p.grad is None for p in model.parameters())
    assert out["dtype"] in ("fp32", "bf16") and out["memory_mb"]["fp32"] > 0 and not out["cached"]
    assert measure_dtype(model, {"input_ids": ids, "labels": ids})["cached"]
    assert (tmp_path / "probes.json").is_file()


@pytest.mark.parametrize("requested", ["fp32", "bf16"])
def test_an_explicit_dtype_is_kept(requested):
    assert pick_dtype(requested) == requested


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_the_probes_step_scores_only_labelled_positions_as_training_does(family):
    """With token labels (SFT's prompt positions are -100) the probes' step runs the LM head only
    where a label counts, as SFT and the preference stages train (compat.plain_lm_head): the same
    loss as the model's own, the same gradients, and fewer activations kept than HF's full-vocabulary
    loss (which keeps the prompt positions' logits too)."""
    from tunesmith.core.device import model_step, step_loss
    from tunesmith.pretraining.presets import build_model

    torch.manual_seed(0)
    model = build_model(family, "nano", vocab=400)
    ids = torch.randint(3, 400, (2, 64))
    labels = ids.masked_fill(torch.arange(64) < 40, -100)  # 40 prompt positions of 64
    batch = {"input_ids": ids, "labels": labels}
    ours = step_loss(model, batch)
    ours.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    theirs = model(**batch).loss
    theirs.backward()
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(grads, model.parameters()))
    model.zero_grad(set_to_none=True)
    kept = model_step(model, batch)("fp32")[1]
    with pytest.MonkeyPatch.context() as mp:  # the step as it was: the model's own full-vocabulary loss
        mp.setattr("tunesmith.core.device.step_loss", lambda m, b: m(**b).loss)
        kept_by_hf = model_step(model, batch)("fp32")[1]
    prompt_logits = 2 * 39 * 400 * 4  # fp32 logits of the 39 shifted prompt positions per row
    assert kept_by_hf - kept >= 0.9 * prompt_logits
    # a classifier (labels per row) keeps the model's own loss
    from transformers import LlamaConfig, LlamaForSequenceClassification

    clf = LlamaForSequenceClassification(LlamaConfig(vocab_size=400, hidden_size=32, intermediate_size=64,
                                                     num_hidden_layers=1, num_attention_heads=2, pad_token_id=0))
    rows = {"input_ids": ids, "labels": torch.tensor([0, 1])}
    assert step_loss(clf, rows).item() == pytest.approx(clf(**rows).loss.item())
