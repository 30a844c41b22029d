"""Presets, tokenizer, init schemes, packing: the parts a pretraining run is built from."""
import math

import pytest
import torch
from transformers import AutoTokenizer
from tunesmith.core.errors import UserError
from tunesmith.pretraining.corpus.generate import generate
from tunesmith.pretraining.init import SCHEMES, initialize, target_stds
from tunesmith.pretraining.packing import IGNORE_INDEX, PackedDataset, pack, tokenize_documents
from tunesmith.pretraining.presets import FAMILIES, SIZES, build_model, count_parameters, resolve_shape
from tunesmith.pretraining.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(generate(300, seed=1), vocab_size=400)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_builds_at_nano_and_runs(family):
    model = build_model(family, "nano", vocab=400)
    n = count_parameters(model)
    assert 100_000 < n < 1_000_000
    ids = torch.randint(0, 400, (2, 16))
    out = model(input_ids=ids, labels=ids)
    assert out.logits.shape == (2, 16, 400) and math.isfinite(out.loss.item())


def test_size_ladder_and_overrides():
    assert [SIZES[s].hidden for s in ("nano", "small", "base", "1b")] == sorted(
        SIZES[s].hidden for s in SIZES)
    shape = resolve_shape("small", layers=3, hidden=128, heads=4, kv_heads=2)
    assert (shape.layers, shape.hidden, shape.heads, shape.kv_heads) == (3, 128, 4, 2)
    model = build_model("llama", "nano", layers=3, kv_heads=1)
    assert model.config.num_hidden_layers == 3 and model.config.num_key_value_heads == 1
    with pytest.raises(UserError, match="not divisible by heads"):
        resolve_shape("nano", hidden=65)
    with pytest.raises(UserError, match="unknown model size"):
        resolve_shape("huge")


def test_tokenizer_round_trip_special_tokens_and_reload(tokenizer, tmp_path):
    text = 'Tom had 3 apples. "Hello," said Mia — naïve café ✓\n\nNew line.'
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text  # byte-level: every string round-trips
    assert len(tokenizer) == 400
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(text, add_special_tokens=False)["input_ids"] == ids
    chat = again.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                     add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_init_scheme_sets_claimed_statistics(family, scheme):
    model = build_model(family, "nano", layers=4, hidden=128, heads=4, kv_heads=2, intermediate=384, vocab=1024)
    initialize(model, family, scheme, std=0.02, seed=0)
    targets = target_stds(model, family, scheme, 0.02)
    modules = dict(model.named_modules())
    outputs = 0
    for name, expected in targets.items():
        w = modules[name].weight.detach().float()
        assert abs(w.mean().item()) < 3 * expected / math.sqrt(w.numel()) + 1e-6, name
        assert w.std().item() == pytest.approx(expected, rel=0.06), name
        outputs += expected < targets[next(iter(targets))]
    if scheme == "gpt2_scaled":  # residual outputs at 0.02 / sqrt(2 * 4 layers)
        assert min(targets.values()) == pytest.approx(0.02 / math.sqrt(8))
        assert outputs == 2 * 4  # two output projections per layer
    if scheme == "small_init":
        assert max(targets.values()) == pytest.approx(math.sqrt(2 / (5 * 128)))
        assert min(targets.values()) == pytest.approx(2 / (4 * math.sqrt(128)))
    norms = [m for n, m in model.named_modules() if "norm" in type(m).__name__.lower()]
    assert norms and all(torch.all(m.weight == 1) for m in norms)


def test_packing_keeps_every_token_and_puts_eos_between_documents(tokenizer):
    docs = generate(40, seed=2)
    per_doc = list(tokenize_documents(tokenizer, docs, batch_size=7))
    assert all(ids[-1] == tokenizer.eos_token_id for ids in per_doc)
    assert sum(ids.count(tokenizer.eos_token_id) for ids in per_doc) == len(docs)
    blocks = list(pack(per_doc, 64))
    assert all(len(b) == 64 for b in blocks[:-1]) and 0 < len(blocks[-1]) <= 64
    flat = [t for b in blocks for t in b]
    assert flat == [t for ids in per_doc for t in ids]  # nothing dropped, order kept
    ds = PackedDataset(blocks, 64, tokenizer.pad_token_id)
    last = ds[len(ds) - 1]
    n = len(blocks[-1])
    assert last["attention_mask"].sum() == n
    assert torch.all(last["labels"][n:] == IGNORE_INDEX) and torch.all(last["labels"][:n] == last["input_ids"][:n])
    text = tokenizer.decode(flat)
    assert text.split(tokenizer.eos_token)[:3] == docs[:3]


def test_packed_blocks_are_views_and_batches_stack_without_a_tokenizer(tokenizer):
    from tunesmith.pretraining.packing import stack_examples

    blocks = list(pack(tokenize_documents(tokenizer, generate(30, seed=4)), 32))
    ds = PackedDataset(blocks, 32, tokenizer.pad_token_id)
    assert ds.blocks == blocks and ds.num_tokens() == sum(map(len, blocks))
    first = ds[0]
    assert first["input_ids"].data_ptr() == ds.ids[0].data_ptr()  # a view, not a copy
    assert ds[-1]["attention_mask"].sum() == len(blocks[-1]) < 32  # negative index: the short last block
    batch = stack_examples([ds[0], ds[len(ds) - 1]])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (2, 32)
    assert batch["input_ids"].dtype == torch.long and batch["attention_mask"].sum() == 32 + len(blocks[-1])
    assert torch.equal(batch["labels"][1, len(blocks[-1]):], torch.full((32 - len(blocks[-1]),), IGNORE_INDEX))
    no_pad = PackedDataset([[5, 6, 7]], 8, None)  # a tokenizer without a pad token (Llama 3.1)
    assert no_pad[0]["input_ids"].tolist() == [5, 6, 7, 0, 0, 0, 0, 0] and no_pad[0]["labels"][3] == IGNORE_INDEX


@pytest.mark.parametrize("family", FAMILIES)
def test_right_padded_blocks_need_no_attention_mask(family):
    """The stage passes no attention mask: padding sits after every real token, so causal attention
    alone gives each real token the same output, and the padded positions are out of the loss."""
    from tunesmith.pretraining.mtp import causal_lm_losses, shifted_ce

    torch.manual_seed(0)
    model = build_model(family, "nano", vocab=400).eval()
    ids = torch.randint(3, 400, (2, 24))
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    ids[1, 15:] = 0
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    with torch.no_grad():
        masked = model(input_ids=ids, attention_mask=mask).logits
        plain = model(input_ids=ids).logits
        assert torch.allclose(masked[mask.bool()], plain[mask.bool()], atol=1e-5)
        with_mask = causal_lm_losses(model, ids, labels, attention_mask=mask)[0]
        without = causal_lm_losses(model, ids, labels)[0]
        assert with_mask.item() == pytest.approx(without.item(), abs=1e-5)
        # the shifted labels give what slicing the logits gives
        sliced = torch.nn.functional.cross_entropy(plain[:, :-2].reshape(-1, 400), labels[:, 2:].reshape(-1),
                                                   ignore_index=IGNORE_INDEX)
        assert shifted_ce(plain, labels, 2).item() == pytest.approx(sliced.item(), rel=1e-6)
