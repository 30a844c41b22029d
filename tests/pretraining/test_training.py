"""Real (tiny) training runs: loss falls, inputs of every kind, resume, continued pretraining."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

import tunesmith as ts
from tunesmith.core.checkpoints import last_checkpoint
from tunesmith.core.errors import UserError
from helpers import REPO, tiny_config, write_corpus


def test_short_run_loss_falls_and_model_folder_is_standard(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", 300)
    cfg = tiny_config(tmp_path, corpus, train={"max_steps": 60, "eval_steps": 30, "save_steps": 30})
    result = ts.pretrain(cfg)
    m = result.metrics
    assert m["steps"] == 60
    assert m["eval_loss"] < m["initial_eval_loss"] - 1.0, m  # clearly learning, not noise
    assert m["perplexity"] == pytest.approx(2.718281828 ** m["eval_loss"], rel=1e-6)
    files = {p.name for p in result.model_path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    model = AutoModelForCausalLM.from_pretrained(result.model_path)
    tok = AutoTokenizer.from_pretrained(result.model_path)
    out = model.generate(**tok("Tom went", return_tensors="pt"), max_new_tokens=5, do_sample=False)
    assert out.shape[1] > 2
    lines = [json.loads(l) for l in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    train_lines = [l for l in lines if "loss" in l]
    assert [l["step"] for l in train_lines] == [5 * i for i in range(1, 13)]
    assert all({"lr", "grad_norm", "tokens_per_s"} <= set(l) for l in train_lines)
    assert yaml.safe_load((result.run_dir / "config.yaml").read_text())["train"]["max_steps"] == 60
    env = json.loads((result.run_dir / "environment.json").read_text())
    assert env["seed"] == 42 and env["dtype"] == "fp32" and env["versions"]["transformers"]


@pytest.mark.parametrize("kind", ["jsonl", "folder", "disk", "parquet", "streaming"])
def test_every_input_kind_trains(tmp_path, kind):
    from tunesmith.pretraining.corpus.generate import generate

    docs = generate(60, seed=3)
    if kind in ("jsonl", "streaming"):
        src = tmp_path / "c.jsonl"
        src.write_text("".join(json.dumps({"body": d, "id": i}) + "\n" for i, d in enumerate(docs)))
    elif kind == "folder":
        src = tmp_path / "docs"
        (src / "sub").mkdir(parents=True)
        for i, d in enumerate(docs):
            (src / ("sub" if i % 2 else "") / f"{i}.txt").write_text(d)
    else:
        import datasets
        ds = datasets.Dataset.from_dict({"body": docs})
        src = tmp_path / ("ds" if kind == "disk" else "c.parquet")
        ds.save_to_disk(str(src)) if kind == "disk" else ds.to_parquet(str(src))
    cfg = tiny_config(tmp_path, src, data={"text_field": "body", "streaming": kind == "streaming",
                                           "validation_blocks": 4},
                      train={"max_steps": 4})
    result = ts.pretrain(cfg)
    assert result.metrics["steps"] == 4 and result.metrics["eval_loss"] < result.metrics["initial_eval_loss"]
    if kind != "streaming":
        assert result.metrics["documents"] == 60


def test_continued_pretraining_starts_from_a_produced_model(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", 120)
    first = ts.pretrain(tiny_config(tmp_path / "a", corpus, train={"max_steps": 30}))
    domain = tmp_path / "domain.txt"
    domain.write_text("\n\n".join(f"{a} plus {b} is {a + b}." for a in range(20) for b in range(20)))
    cfg = tiny_config(tmp_path / "b", domain, model={"from_pretrained": str(first.model_path)},
                      train={"max_steps": 20, "lr": 2e-3})
    cont = ts.pretrain(cfg)
    base = load_file(first.model_path / "model.safetensors")
    new = load_file(cont.model_path / "model.safetensors")
    assert base.keys() == new.keys()
    # it started from the trained weights (same tokenizer, small initial loss gap) and moved
    assert cont.metrics["initial_eval_loss"] < first.metrics["initial_eval_loss"]
    assert cont.metrics["eval_loss"] < cont.metrics["initial_eval_loss"]
    assert any(not torch.equal(base[k], new[k]) for k in base)
    assert json.loads((cont.model_path / "tokenizer.json").read_text())["model"]["vocab"] == \
        json.loads((first.model_path / "tokenizer.json").read_text())["model"]["vocab"]


def test_resume_after_kill_continues_from_the_saved_step(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", 200)
    # far more steps than the test waits for: the run must still be going when the kill lands
    cfg = tiny_config(tmp_path, corpus, train={"max_steps": 100_000, "save_steps": 10, "logging_steps": 5})
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tunesmith.cli", "pretrain", str(recipe)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpts = tmp_path / "run" / "checkpoints"
    deadline = time.time() + 240
    # any complete checkpoint at step >= 20: save_total_limit rotates checkpoint-20 away within
    # 20 steps, which a fast machine runs between two polls
    while (ckpt := last_checkpoint(ckpts)) is None or int(ckpt.name.split("-")[-1]) < 20:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "run" / "model").exists()
    # the run may have saved more checkpoints before the kill landed: continue 10 steps past the newest
    target = int(last_checkpoint(ckpts).name.split("-")[-1]) + 10
    result = ts.pretrain(tiny_config(tmp_path, corpus, train={"max_steps": target, "save_steps": 10,
                                                              "logging_steps": 5}, run={"resume": True}))
    assert result.metrics["steps"] == target
    steps = [json.loads(l)["step"] for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in l]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) and steps[-1] == target
    state = json.loads((ckpts / f"checkpoint-{target}" / "trainer_state.json").read_text())
    assert state["global_step"] == target


def test_resume_of_a_finished_run_trains_no_further_and_past_the_end_is_refused(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", 200)
    train = {"max_steps": 20, "save_steps": 10, "logging_steps": 5}
    first = ts.pretrain(tiny_config(tmp_path, corpus, train=train))
    shutil.rmtree(first.model_path)                    # died after the last checkpoint, before the model
    again = ts.pretrain(tiny_config(tmp_path, corpus, train=train, run={"resume": True}))
    assert again.metrics["steps"] == 20
    assert load_file(again.model_path / "model.safetensors").keys() == load_file(
        tmp_path / "run" / "checkpoints" / "checkpoint-20" / "model.safetensors").keys()
    for k, v in load_file(tmp_path / "run" / "checkpoints" / "checkpoint-20" / "model.safetensors").items():
        assert torch.equal(v, load_file(again.model_path / "model.safetensors")[k]), k
    shutil.rmtree(again.model_path)
    with pytest.raises(UserError, match=r"checkpoint-20 is past train.max_steps=10"):
        ts.pretrain(tiny_config(tmp_path, corpus, train={**train, "max_steps": 10}, run={"resume": True}))


def test_overwrite_replaces_the_old_runs_tokenizer(tmp_path):
    """An overwritten run saves its own tokenizer: the old one would be what --resume (and the
    other ranks) load next."""
    corpus = write_corpus(tmp_path / "c.txt", 60)
    ts.pretrain(tiny_config(tmp_path, corpus, train={"max_steps": 2}))
    again = ts.pretrain(tiny_config(tmp_path, corpus, tokenizer={"vocab_size": 400}, train={"max_steps": 2},
                                    run={"overwrite": True}))
    saved = AutoTokenizer.from_pretrained(tmp_path / "run" / "tokenizer")
    assert len(saved) == len(AutoTokenizer.from_pretrained(again.model_path)) > 320
