"""Several adapters on one base: switch, weighted add, and stacking for pipelines."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from tunesmith.adapters import AdapterConfig, apply, load_base
from tunesmith.adapters.artifacts import save_adapter
from tunesmith.adapters.multi import combine, load_many, stack, switch
from tunesmith.core.errors import UserError

from .conftest import lm_batch, train
from .test_artifacts import logits


def two_adapters(folder, tmp_path):
    cfg = AdapterConfig(rank=4)
    paths = {}
    for i, name in enumerate(["a", "b"]):
        model = apply(load_base(folder, cfg), cfg)
        train(model, cfg, lm_batch(seed=i), steps=4)
        paths[name] = save_adapter(model, tmp_path / name, cfg, base=folder)
    return paths


def test_switch_and_weighted_add(nano_folder, tmp_path):
    paths = two_adapters(nano_folder, tmp_path)
    batch = lm_batch(seed=5)
    base_logits = logits(AutoModelForCausalLM.from_pretrained(nano_folder), batch)
    model = load_many(AutoModelForCausalLM.from_pretrained(nano_folder), paths)
    out_a = logits(model, batch)
    out_b = logits(switch(model, "b"), batch)
    assert not torch.allclose(out_a, out_b)
    # "cat" keeps both deltas exactly: each layer's delta is the weighted sum of the two
    combine(model, {"a": 0.7, "b": 0.3}, how="cat")
    q_proj = model.get_base_model().model.layers[1].self_attn.q_proj
    torch.testing.assert_close(q_proj.get_delta_weight("combined"),
                               0.7 * q_proj.get_delta_weight("a") + 0.3 * q_proj.get_delta_weight("b"))
    assert not torch.allclose(logits(model, batch), out_a)
    out_zero = logits(combine(model, {"a": 0.0, "b": 0.0}, name="off", how="cat"), batch)
    torch.testing.assert_close(out_zero, base_logits)


def test_combining_adapters_with_trained_token_rows_is_refused(nano_folder, tmp_path):
    cfg = AdapterConfig(rank=4)
    paths = {}
    for name in ("a", "b"):  # as a default LoRA SFT saves them: the chat tokens' rows train too
        model = apply(load_base(nano_folder, cfg), cfg, token_ids=[1, 2])
        paths[name] = save_adapter(model, tmp_path / name, cfg, base=nano_folder)
    model = load_many(AutoModelForCausalLM.from_pretrained(nano_folder), paths)
    with pytest.raises(UserError, match="trains token rows"):
        combine(model, {"a": 0.5, "b": 0.5}, how="cat")


def test_stack_merged_and_separate_agree(nano_folder, tmp_path):
    paths = two_adapters(nano_folder, tmp_path)
    batch = lm_batch(seed=5)
    cfg = AdapterConfig(rank=4, init="gaussian", dropout=0.0)
    results = []
    for merge_first in (True, False):
        torch.manual_seed(3)
        model = stack(AutoModelForCausalLM.from_pretrained(nano_folder), paths["a"], cfg,
                      merge_first=merge_first)
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert trainable and all(".default" in n for n in trainable)
        results.append(logits(model, batch))
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-4)
