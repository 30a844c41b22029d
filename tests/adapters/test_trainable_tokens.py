"""`adapter.trainable_tokens`: token rows trained next to LoRA through TRL's fused LM-head loss,
saved in a stock PEFT folder, merged; the chat template's tokens found; bad values rejected."""
from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM
from trl.trainer.utils import add_fused_lm_head

from tunesmith.adapters import AdapterConfig, apply, load_base, peft_config
from tunesmith.adapters.artifacts import save_adapter
from tunesmith.adapters.merge import merge
from tunesmith.adapters.tokens import chat_template_tokens, token_indices_config, trainable_token_ids
from tunesmith.core.config import coerce
from tunesmith.core.errors import UserError

from .conftest import nano

ROWS = [3, 4]  # <|im_start|>, <|im_end|> in tunesmith's tokenizers


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tokens with the trainable rows in the inputs and among the targets."""
    ids = torch.randint(5, 2048, (4, 16), generator=torch.Generator().manual_seed(seed))
    ids[:, ::4], ids[:, 2::4] = ROWS[0], ROWS[1]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


def _deltas(model) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if "trainable_tokens_delta" in n}


def _logits(model, batch):
    model.eval()
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@pytest.fixture(params=["tied", "untied"])
def base_folder(request, tmp_path):
    path = tmp_path / "base"
    nano("llama", tie_embeddings=request.param == "tied").save_pretrained(path)
    return path


def test_rows_train_through_trls_fused_lm_head(base_folder):
    """TRL's SFT/DPO trainers compute the loss with `add_fused_lm_head`, which reads
    `lm_head.weight` and `lm_head.bias` directly: the token rows must get the gradient there."""
    cfg = AdapterConfig(method="lora", rank=4)
    model = apply(load_base(base_folder, cfg), cfg, token_ids=ROWS)
    base = model.get_base_model()
    tied = base.config.tie_word_embeddings
    add_fused_lm_head(base)  # what trl.SFTTrainer.__init__ does to the PEFT model's base
    deltas = _deltas(model)
    assert len(deltas) == (1 if tied else 2)       # embedding rows (+ the head's own rows when untied)
    batch = _batch()
    fused = model(**batch, fused_lm_head=True).loss
    torch.testing.assert_close(fused, model(**batch).loss, rtol=1e-5, atol=1e-5)
    fused.backward()
    for name, p in deltas.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    before = {n: p.detach().clone() for n, p in deltas.items()}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = model(**batch, fused_lm_head=True).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(not torch.equal(p, before[n]) for n, p in deltas.items())
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    out_rows = base.get_output_embeddings().weight  # merged: only the chosen rows differ from the base
    changed = (out_rows != base.get_output_embeddings().token_adapter.base_layer.weight).any(dim=1)
    assert changed.nonzero().flatten().tolist() == ROWS
    with torch.no_grad(), model.disable_adapter():  # TRL's reference pass (DPO) sees the untouched base
        reference = model(**batch, fused_lm_head=True).loss
        torch.testing.assert_close(reference, load_base(base_folder, cfg)(**batch).loss, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["lora", "pissa"])
def test_saved_rows_load_in_stock_peft_and_merge(base_folder, tmp_path, method):
    """PiSSA is saved converted to plain LoRA; peft's conversion drops every other tensor, which
    save_adapter puts back."""
    cfg = AdapterConfig(method=method, rank=4, init="gaussian" if method == "lora" else None)
    model = apply(load_base(base_folder, cfg), cfg, token_ids=ROWS)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(4):
        model(**_batch()).loss.backward()
        opt.step()
        opt.zero_grad()
    batch = _batch(seed=1)
    expected = _logits(model, batch)
    out = save_adapter(model, tmp_path / "adapter", cfg, base=base_folder)

    stock = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_folder), out)
    torch.testing.assert_close(_logits(stock, batch), expected, rtol=0 if method == "lora" else 1e-4,
                               atol=0 if method == "lora" else 1e-4)

    merged = AutoModelForCausalLM.from_pretrained(merge(out, tmp_path / "merged"))
    torch.testing.assert_close(_logits(merged, batch), expected, rtol=1e-4, atol=1e-4)
    original = AutoModelForCausalLM.from_pretrained(base_folder)
    for layer in ("get_input_embeddings", "get_output_embeddings"):
        diff = (getattr(merged, layer)().weight != getattr(original, layer)().weight).any(dim=1)
        assert diff.nonzero().flatten().tolist() == ROWS, layer


def _tokenizer():
    from tunesmith.pretraining.tokenizer import train_tokenizer
    return train_tokenizer(["the cat sat on the mat. what is 2 plus 3?"] * 50, vocab_size=300)


def test_chat_template_tokens_resolve_auto_and_lists():
    tok = _tokenizer()
    assert chat_template_tokens(tok) == ["<|im_start|>", "<|im_end|>"]
    assert trainable_token_ids(AdapterConfig(), tok, auto=True) == ROWS
    assert trainable_token_ids(AdapterConfig(), tok) == []                       # auto outside sft: none
    assert trainable_token_ids(AdapterConfig(trainable_tokens="none"), tok, auto=True) == []
    assert trainable_token_ids(AdapterConfig(method="full"), tok, auto=True) == []
    listed = AdapterConfig(trainable_tokens=["<|im_end|>", "<|endoftext|>", "<|im_end|>"])
    assert trainable_token_ids(listed, tok) == [4, 2]
    with pytest.raises(UserError, match=r'"adapter.trainable_tokens".*<\|eot_id\|>'):
        trainable_token_ids(AdapterConfig(trainable_tokens=["<|eot_id|>"]), tok)
    # a template that names other special tokens, and rejects a system turn
    tok.add_special_tokens({"additional_special_tokens": ["<|turn|>", "<|end|>"]})
    tok.chat_template = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
                         "{% for m in messages %}<|turn|>{{ m['content'] }}<|end|>{% endfor %}")
    assert chat_template_tokens(tok) == ["<|turn|>", "<|end|>"]


@pytest.mark.parametrize("bad,message", [
    ({"method": "ia3", "trainable_tokens": ["<|im_end|>"]}, "LoRA methods only"),
    ({"method": "full", "trainable_tokens": ["<|im_end|>"]}, "already trains every token row"),
    ({"trainable_tokens": []}, "is empty"),
    ({"trainable_tokens": "<|im_end|>"}, r"a single token is a list too: \[<\|im_end\|>\]"),
])
def test_bad_trainable_tokens_name_the_field(bad, message):
    with pytest.raises(UserError, match=message) as e:
        coerce(AdapterConfig, bad)
    assert "trainable_tokens" in str(e.value)


def test_token_lists_need_resolving_and_clash_with_modules_to_save():
    model = nano("llama")
    listed = AdapterConfig(trainable_tokens=["<|im_end|>"])
    with pytest.raises(UserError, match="adapter.trainable_tokens"):
        peft_config(model, listed)                    # a list the caller did not resolve to ids
    whole = {"modules_to_save": ["embed_tokens", "lm_head"]}
    with pytest.raises(UserError, match="already trains the whole embedding"):
        token_indices_config(model, AdapterConfig(**whole, trainable_tokens=["<|im_end|>"]), ROWS)
    assert token_indices_config(model, AdapterConfig(**whole), ROWS) is None   # auto steps aside
    lora_emb = {"target_modules": ["q_proj", "embed_tokens"]}                  # LoRA on the embedding
    assert peft_config(model, AdapterConfig(**lora_emb), ROWS).trainable_token_indices is None
    with pytest.raises(UserError, match="target_modules put LoRA on"):
        peft_config(model, AdapterConfig(**lora_emb, trainable_tokens=["<|im_end|>"]), ROWS)
    assert token_indices_config(model, AdapterConfig(trainable_tokens="none"), ROWS) is None
    with pytest.raises(UserError, match="beyond the model's 2048 embedding rows"):
        token_indices_config(model, listed, [5000])
    assert token_indices_config(model, AdapterConfig(), ROWS) == {"model.embed_tokens": ROWS}
    untied = nano("llama", tie_embeddings=False)
    assert token_indices_config(untied, AdapterConfig(), ROWS) == {"model.embed_tokens": ROWS, "lm_head": ROWS}

