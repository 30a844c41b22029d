"""Perplexity against the model's own loss; greedy exact match with batching and normalization."""
import math

import pytest
import torch

from tunesmith.core.errors import UserError
from tunesmith.eval import exact_match_accuracy, greedy_completions, perplexity

TEXTS = ["The weather was calm and the sea was flat.", "A man is playing a guitar on the street corner."]


def test_perplexity_equals_exp_of_the_model_loss(nano_lm):
    model, tok, _ = nano_lm
    ids = [tok.bos_token_id]
    for t in TEXTS:
        ids += tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    with torch.no_grad():
        loss = float(model(torch.tensor([ids]), labels=torch.tensor([ids])).loss)
    got = perplexity(model, tok, TEXTS, block_size=256)
    assert got["tokens"] == len(ids) - 1
    assert got["perplexity"] == pytest.approx(math.exp(loss), rel=1e-4)
    # windows: every token scored once whatever the stride; a sliding window changes the context only
    strided = perplexity(model, tok, TEXTS, block_size=8, stride=4, batch_size=3)
    chunked = perplexity(model, tok, TEXTS, block_size=8)
    assert strided["tokens"] == chunked["tokens"] == len(ids) - 1
    assert strided["perplexity"] != pytest.approx(chunked["perplexity"], rel=1e-6)
    with pytest.raises(UserError, match="stride 9 must be between 1 and block_size 8"):
        perplexity(model, tok, TEXTS, block_size=8, stride=9)


def test_greedy_batches_match_one_by_one_and_exact_match_normalizes(nano_lm):
    model, tok, _ = nano_lm
    prompts = ["The cat", "A much longer prompt about the weather and", "Yes"]
    batched = greedy_completions(model, tok, prompts, 6, batch_size=3, stop=None)
    single = [greedy_completions(model, tok, [p], 6, stop=None)[0] for p in prompts]
    assert batched == single and all(batched)
    assert exact_match_accuracy(model, tok, prompts, batched, 6, stop=None) == 1.0
    shouted = ["  THE " + c.upper() + "!! " for c in batched]  # articles, case, punctuation, spaces
    assert exact_match_accuracy(model, tok, prompts, shouted, 6, stop=None) == 1.0
    mixed = [["nope", batched[0]], "wrong", "wrong"]
    assert exact_match_accuracy(model, tok, prompts, mixed, 6, stop=None) == pytest.approx(1 / 3)
    with pytest.raises(UserError, match="got 3 prompts for 2 answers"):
        exact_match_accuracy(model, tok, prompts, batched[:2], 6)


def test_perplexity_of_a_peft_model_folds_lora_and_restores_it(nano_lm, monkeypatch):
    """A PeftModel is scored with its LoRA deltas folded in (same value as the unfolded model,
    which a spy on the forward confirms) and gets its weights back afterwards."""
    import copy

    from peft import LoraConfig, get_peft_model
    model, tok, _ = nano_lm
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # B is zero at init, which would hide a missing delta
    q_proj = peft_model.get_base_model().model.layers[0].self_attn.q_proj
    q_proj.merged_during = []
    forward = type(peft_model).forward
    monkeypatch.setattr(type(peft_model), "forward",
                        lambda self, *a, **k: q_proj.merged_during.append(q_proj.merged) or forward(self, *a, **k))
    weights = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    with torch.no_grad():
        q_proj.merged_during.append("reference")
        ids = [tok.bos_token_id] + tok(TEXTS[0], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        loss = float(peft_model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss)
    got = perplexity(peft_model, tok, TEXTS[:1], block_size=256)
    assert got["perplexity"] == pytest.approx(math.exp(loss), rel=1e-4)
    assert got["perplexity"] != pytest.approx(perplexity(model, tok, TEXTS[:1], block_size=256)["perplexity"], rel=1e-3)
    assert q_proj.merged_during == ["reference", False, True] and not q_proj.merged
    for name, p in peft_model.named_parameters():
        torch.testing.assert_close(p.detach(), weights[name], rtol=0, atol=1e-5, msg=name)
