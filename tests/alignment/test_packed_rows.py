"""Packed rows (sft.batching: packed_rows): each example in a packed row gets exactly the logits
and loss it gets alone, attends to nothing outside itself, and carries no loss across a boundary;
the model's own attention comes back afterwards."""
from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tunesmith.alignment.batching import candidates
from tunesmith.alignment.packed import PackedRowsCollator, packed_attention, segments, supports_packed_rows

LENGTHS = [[5, 9, 3], [7, 4]]  # two rows: three examples, then two and padding


def _model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config).eval()


def _rows(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    examples, rows = [], []
    for lengths in LENGTHS:
        ids = []
        for n in lengths:
            examples.append(torch.randint(1, 100, (n,), generator=gen).tolist())
            ids += examples[-1]
        rows.append({"input_ids": ids, "labels": ids, "seq_lengths": lengths})
    return examples, rows


def test_collator_marks_boundaries_padding_and_positions():
    _, rows = _rows()
    batch = PackedRowsCollator(pad_token_id=0)(rows)
    assert batch["input_ids"].shape == (2, 17)
    assert batch["position_ids"][0].tolist() == [*range(5), *range(9), *range(3)]
    assert batch["position_ids"][1].tolist() == [*range(7), *range(4), *range(6)]   # the tail is its own segment
    starts = [0, 5, 14]
    assert all(batch["labels"][0, s] == -100 for s in starts)          # no example predicts the next one's start
    assert (batch["labels"][0] != -100).sum() == 17 - 3
    assert (batch["labels"][1, 11:] == -100).all() and (batch["input_ids"][1, 11:] == 0).all()
    assert batch["attention_mask"].sum() == 17 + 11                     # what the trainer counts real tokens by
    assert segments(batch["position_ids"]) == [[(0, 5), (5, 14), (14, 17)], [(0, 7), (7, 11), (11, 17)]]


def test_each_packed_example_equals_itself_alone():
    model = _model()
    examples, rows = _rows()
    batch = PackedRowsCollator(pad_token_id=0)(rows)
    with torch.no_grad(), packed_attention(model):
        packed = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        # the loss of the packed batch is the token-mean of every example's loss alone
        packed_loss = model(**batch).loss
    assert model.config._attn_implementation == "sdpa"                 # restored
    k, total, count = 0, 0.0, 0
    with torch.no_grad():
        for i, lengths in enumerate(LENGTHS):
            start = 0
            for n in lengths:
                ids = torch.tensor([examples[k]])
                alone = model(input_ids=ids, labels=ids)
                torch.testing.assert_close(packed[i, start:start + n], alone.logits[0], atol=1e-5, rtol=1e-4)
                total, count = total + float(alone.loss) * (n - 1), count + n - 1
                start, k = start + n, k + 1
    assert abs(float(packed_loss) - total / count) < 1e-5


def test_no_attention_across_examples():
    """Changing the first example of a row changes nothing of the others; without the per-example
    attention (plain causal over the row) it does: the check can fail."""
    model = _model()
    _, rows = _rows()
    changed = [dict(r) for r in rows]
    changed[0] = {**rows[0], "input_ids": [7] * 5 + rows[0]["input_ids"][5:]}
    collate = PackedRowsCollator(pad_token_id=0)
    a, b = collate(rows), collate(changed)
    with torch.no_grad():
        with packed_attention(model):
            out_a = model(input_ids=a["input_ids"], position_ids=a["position_ids"]).logits
            out_b = model(input_ids=b["input_ids"], position_ids=b["position_ids"]).logits
        leaky_b = model(input_ids=b["input_ids"], attention_mask=torch.ones_like(b["input_ids"])).logits
    torch.testing.assert_close(out_a[0, 5:], out_b[0, 5:])
    assert (out_a[0, :5] - out_b[0, :5]).abs().max() > 1e-4
    assert (leaky_b[0, 5:] - out_a[0, 5:]).abs().max() > 1e-3


def test_padded_batches_and_generation_keep_sdpa_semantics():
    """Inside the switch, a batch with a padding mask and no packing (evaluation), and cached
    generation, give what sdpa gives."""
    model = _model()
    ids = torch.tensor([[5, 6, 7, 8, 9], [3, 4, 5, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask).logits
        greedy = model.generate(ids[:1], max_new_tokens=4, do_sample=False)
        with packed_attention(model):
            inside = model(input_ids=ids, attention_mask=mask).logits
            greedy_inside = model.generate(ids[:1], max_new_tokens=4, do_sample=False)
    torch.testing.assert_close(inside[0], plain[0])
    torch.testing.assert_close(inside[1, :3], plain[1, :3])
    assert torch.equal(greedy, greedy_inside)


def test_which_models_can_train_on_packed_rows():
    model = _model()
    assert supports_packed_rows(model) and candidates(model)[0] == "packed_rows"
    model.config._attn_implementation = "eager"
    assert not supports_packed_rows(model) and candidates(model) == ["padding"]
