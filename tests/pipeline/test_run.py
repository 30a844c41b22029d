"""`tunesmith run`: pretrain -> sft -> dpo in one recipe, each stage feeding the next, resumable
after the process is killed mid-stage."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from transformers import AutoModelForCausalLM

from tunesmith.core.checkpoints import last_checkpoint
from helpers import REPO, assert_user_error, run_cli, write_corpus


def _recipe(tmp_path, corpus):
    train = {"batch_size": 4, "dtype": "fp32", "logging_steps": 1}
    return {
        "run": {"dir": str(tmp_path / "pipe")},
        "stages": [
            {"stage": "pretrain", "name": "base",
             "model": {"layers": 1, "hidden": 32, "heads": 2, "kv_heads": 1, "intermediate": 64},
             "tokenizer": {"vocab_size": 320}, "data": {"train": str(corpus), "block_size": 32},
             "train": {**train, "max_steps": 10, "batch_size": 8}, "run": {"sample_tokens": 0}},
            {"stage": "sft", "adapter": {"method": "lora", "rank": 4},
             "tasks": {"names": ["add"], "train_rows": 64, "eval_rows": 8},
             "train": {**train, "max_steps": 40, "save_steps": 2}},
            {"stage": "dpo", "adapter": {"method": "lora", "rank": 4},
             "tasks": {"names": ["add"], "train_rows": 16, "eval_rows": 8}, "train": {**train, "max_steps": 3}},
        ],
    }


@pytest.mark.slow
def test_pipeline_feeds_stages_and_resumes_after_kill(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", 120)
    recipe = tmp_path / "pipe.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(tmp_path, corpus)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tunesmith.cli", "run", str(recipe)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # any complete SFT checkpoint: save_total_limit rotates checkpoint-2 away within a few steps
    deadline = time.time() + 300
    while last_checkpoint(tmp_path / "pipe" / "2-sft" / "checkpoints") is None:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    base_results = (tmp_path / "pipe" / "1-base" / "results.json").stat().st_mtime_ns
    assert not (tmp_path / "pipe" / "2-sft" / "results.json").exists()

    done = run_cli("run", str(recipe), "--json", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert [s["skipped"] for s in out["stages"]] == [True, False, False]
    assert (tmp_path / "pipe" / "1-base" / "results.json").stat().st_mtime_ns == base_results
    sft_steps = [json.loads(l)["step"] for l in (tmp_path / "pipe" / "2-sft" / "metrics.jsonl").read_text()
                 .splitlines() if '"loss"' in l]
    assert sft_steps[-1] == 40 and len(sft_steps) == len(set(sft_steps))  # resumed, no step twice
    sft_cfg = yaml.safe_load((tmp_path / "pipe" / "2-sft" / "config.yaml").read_text())
    assert sft_cfg["model"]["path"].endswith("1-base/model")  # the pretrained model fed SFT
    dpo_cfg = yaml.safe_load((tmp_path / "pipe" / "3-dpo" / "config.yaml").read_text())
    assert dpo_cfg["model"]["path"].endswith("2-sft/merged")  # SFT's adapter merged before DPO
    final = AutoModelForCausalLM.from_pretrained(out["model_path"])
    assert final.config.num_hidden_layers == 1
    report = (tmp_path / "pipe" / "report.md").read_text()   # the root's report covers every stage
    assert all(name in report for name in ("1-base", "2-sft", "3-dpo"))


def test_bad_stage_type(tmp_path):
    recipe = tmp_path / "p.yaml"
    recipe.write_text("stages:\n  - {stage: ppo}\n")
    assert_user_error(run_cli("run", str(recipe)), 'unknown or missing stage type "ppo"', "rlhf")
