"""compat.plain_lm_head answers TRL's fused-LM-head calls with what TRL's kernel answers (trl 1.16):
the same per-token fields, zeros and loss, and the same gradients; generation is untouched."""
from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from trl.trainer.utils import add_fused_lm_head

from tunesmith.compat import plain_lm_head

FIELDS = ("log_probs", "entropy", "mean_logits", "is_top1", "log_sum_sq_probs")


def _models():
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=80, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=0))
    trl_model, ours = model, copy.deepcopy(model)
    add_fused_lm_head(trl_model, outputs=FIELDS)
    add_fused_lm_head(ours, outputs=FIELDS)
    assert plain_lm_head(ours, outputs=FIELDS) and not plain_lm_head(ours, outputs=FIELDS)  # once
    return trl_model, ours


@pytest.mark.parametrize("masked", [0.3, 0.9])
def test_plain_head_matches_trls_kernel(masked):
    """The plain head scores only the positions whose label counts (a chat row's assistant turns);
    with most positions masked and one row all masked, every field is TRL's."""
    trl_model, ours = _models()
    ids = torch.randint(1, 80, (3, 12))
    labels = ids.masked_fill(torch.rand(3, 12) < masked, -100)
    labels[1] = -100
    mask = torch.ones_like(ids)
    a = trl_model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    b = ours(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    for name in FIELDS + ("label_mask",):
        x, y = getattr(a, name), getattr(b, name)
        assert x is not None and y is not None, name
        if x.dtype == torch.bool:
            assert torch.equal(x, y), name
        else:
            torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-4, msg=name)
    torch.testing.assert_close(b.loss, a.loss)
    a.loss.backward()
    b.loss.backward()
    for (name, p), q in zip(trl_model.named_parameters(), ours.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-4, msg=name)


def test_large_logits_keep_trls_kernel_and_plain_calls_pass_through():
    trl_model, _ = _models()
    big = copy.deepcopy(trl_model)
    plain_lm_head(big, outputs=FIELDS, max_logits_bytes=0)
    ids = torch.randint(1, 80, (2, 6))
    torch.testing.assert_close(big(input_ids=ids, labels=ids, fused_lm_head=True).log_probs,
                               trl_model(input_ids=ids, labels=ids, fused_lm_head=True).log_probs)
    torch.testing.assert_close(big(input_ids=ids).logits, trl_model(input_ids=ids).logits)


def test_plain_head_reads_the_head_as_trl_does_on_peft_token_rows():
    """A LoRA adapter training the chat tokens' rows of a tied embedding/head: the head's trained rows
    count in the plain path exactly as in TRL's (its merged `weight`), gradients included."""
    from peft import LoraConfig, get_peft_model

    from tunesmith.compat import expose_head_bias

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=80, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1, pad_token_id=0,
                                        tie_word_embeddings=True))

    def wrapped():
        model = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                               trainable_token_indices={"embed_tokens": [5, 6]}))
        expose_head_bias(model)
        add_fused_lm_head(model.get_base_model(), outputs=("log_probs",))
        return model
    trl_model, ours = wrapped(), wrapped()
    with torch.no_grad():
        for name, p in trl_model.named_parameters():
            if "trainable_tokens_delta" in name:
                p.normal_()
    ours.load_state_dict(trl_model.state_dict())
    assert plain_lm_head(ours)
    ids = torch.tensor([[1, 5, 6, 7, 8, 5, 9, 6]])
    a = trl_model(input_ids=ids, labels=ids, fused_lm_head=True)
    b = ours(input_ids=ids, labels=ids, fused_lm_head=True)
    torch.testing.assert_close(b.log_probs, a.log_probs, atol=1e-5, rtol=1e-4)
    a.loss.backward()
    b.loss.backward()
    for (name, p), q in zip(trl_model.named_parameters(), ours.parameters()):
        if p.requires_grad:
            torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)
