"""Multi-token prediction and curriculum learning."""
import math

import pytest
import torch
from transformers import AutoModelForCausalLM
from tunesmith.pretraining.curriculum import CurriculumSampler, competence
from tunesmith.pretraining.mtp import HEADS_FILE, attach_heads, causal_lm_losses, load_heads
from tunesmith.pretraining.presets import build_model

from helpers import tiny_config, write_corpus


def test_mtp_loss_is_the_sum_of_head_losses_and_head_k_predicts_t_plus_k():
    torch.manual_seed(0)
    model = build_model("llama", "nano", vocab=300)
    heads = attach_heads(model, 3)
    for h in heads:  # make the heads non-trivial
        torch.nn.init.normal_(h.down.weight, std=0.05)
    ids = torch.randint(3, 300, (2, 24))
    losses = causal_lm_losses(model, ids, ids.clone(), heads=heads)
    assert len(losses) == 3
    hidden = model.base_model(input_ids=ids).last_hidden_state
    lm = model.get_output_embeddings()
    manual = [torch.nn.functional.cross_entropy(lm(hidden)[:, :-1].reshape(-1, 300), ids[:, 1:].reshape(-1))]
    for k, head in enumerate(heads, start=2):
        logits = lm(head(hidden))[:, :-k]
        manual.append(torch.nn.functional.cross_entropy(logits.reshape(-1, 300), ids[:, k:].reshape(-1)))
    for got, want in zip(losses, manual):
        assert got.item() == pytest.approx(want.item(), rel=1e-5)
    assert losses[0].item() == pytest.approx(model(input_ids=ids, labels=ids).loss.item(), rel=1e-5)


def test_mtp_training_logs_each_head_and_saves_a_plain_causal_lm(tmp_path):
    import tunesmith as ts

    corpus = write_corpus(tmp_path / "c.txt", 80)
    cfg = tiny_config(tmp_path, corpus, objective={"type": "multi_token", "n_heads": 3},
                      train={"max_steps": 6, "logging_steps": 3})
    result = ts.pretrain(cfg)
    logged = [r for r in (result.run_dir / "metrics.jsonl").read_text().splitlines() if "loss_head_3" in r]
    assert len(logged) == 2
    import json
    rec = json.loads(logged[-1])
    # the logged total is the sum of the logged head losses
    assert rec["loss"] == pytest.approx(rec["loss_head_1"] + rec["loss_head_2"] + rec["loss_head_3"], rel=1e-3)
    model = AutoModelForCausalLM.from_pretrained(result.model_path)
    assert not hasattr(model, "mtp_heads")
    assert (result.model_path / HEADS_FILE).exists()
    out = model.generate(torch.tensor([[1, 5, 6]]), max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 7)
    attach_heads(model, 3)
    assert load_heads(model, result.model_path, 3)  # training can continue with the heads


def test_competence_schedules():
    assert competence(0.0, 0.2, 0.5, "linear") == pytest.approx(0.2)
    assert competence(0.25, 0.2, 0.5, "linear") == pytest.approx(0.6)
    assert competence(0.25, 0.2, 0.5, "root") == pytest.approx(math.sqrt(0.04 + 0.96 * 0.5))
    assert competence(0.49, 0.2, 0.5, "step") == 0.2 and competence(0.5, 0.2, 0.5, "step") == 1.0
    assert all(competence(t / 10, 0.1, 0.6, "root") <= competence((t + 1) / 10, 0.1, 0.6, "root") for t in range(10))


def test_curriculum_sampler_draws_easy_blocks_first():
    s = CurriculumSampler(n_blocks=1000, total_samples=4000, start=0.1, full_at=0.5, pacing="linear", seed=0)
    idx = list(s)
    assert len(idx) == 4000 and idx == list(s)  # deterministic: a resumed run sees the same order
    limits = [math.ceil(competence(i / 4000, 0.1, 0.5, "linear") * 1000) for i in range(4000)]
    assert all(i < lim for i, lim in zip(idx, limits))  # never harder than the competence allows
    assert max(idx[:40]) < 120  # early: only the easiest ~10 %
    assert max(idx[2000:]) > 900  # after full_at: everything
    assert sum(idx[:1000]) / 1000 < sum(idx[3000:]) / 1000


def test_curriculum_orders_training_documents_by_length(tmp_path):
    from tunesmith.pretraining.config import PretrainConfig
    from tunesmith.pretraining.data import build_data
    from tunesmith.pretraining.tokenizer import train_tokenizer

    docs = [("word " * n).strip() for n in [30, 3, 12, 50, 7, 22, 1, 40, 9, 16] * 3]
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(docs))
    tok = train_tokenizer(docs, vocab_size=300)
    cfg = PretrainConfig.model_validate(tiny_config(tmp_path, corpus, data={"validation_fraction": 0.1},
                                                    curriculum={"enabled": True}))
    data = build_data(cfg, tok)
    flat = [t for b in data.train.blocks for t in b]
    text = tok.decode(flat)
    lengths = [len(d.split()) for d in text.split(tok.eos_token) if d.strip()]
    assert lengths == sorted(lengths) and len(lengths) == 27


def test_perplexity_curriculum_orders_by_reference_model_nll(tmp_path):
    from tunesmith.pretraining.config import PretrainConfig
    from tunesmith.pretraining.curriculum import perplexity_scores
    from tunesmith.pretraining.data import build_data
    from tunesmith.pretraining.tokenizer import train_tokenizer

    docs = [f"doc {i} " + " ".join(["la"] * (i % 7 + 3)) for i in range(30)]
    tok = train_tokenizer(docs, vocab_size=300)
    ref = build_model("llama", "nano", vocab=len(tok)).eval()
    ids = [tok(d)["input_ids"] for d in docs]
    scores = perplexity_scores(ref, ids, batch_size=7)
    one_by_one = [perplexity_scores(ref, [x])[0] for x in ids[:5]]
    assert scores[:5] == pytest.approx(one_by_one, rel=1e-4)  # padding does not change a score
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(docs))
    cfg = PretrainConfig.model_validate(tiny_config(
        tmp_path, corpus, data={"validation_fraction": 0.0},
        curriculum={"enabled": True, "score": "perplexity", "reference_model": "unused-here"}))
    data = build_data(cfg, tok, reference_model=ref)
    eos = tok.eos_token_id
    flat = [t for b in data.train.blocks for t in b]
    ordered, cur = [], []
    for t in flat:
        cur.append(t)
        if t == eos:
            ordered.append(cur)
            cur = []
    got = perplexity_scores(ref, ordered)  # documents as scored: with their EOS
    assert got == sorted(got)
