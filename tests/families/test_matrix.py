"""The families users fine-tune, through every stage: tiny Llama 3.1, Qwen3, Gemma 3 (real tokenizers
and chat templates), Mistral and Phi-3 run SFT (LoRA, QLoRA, full), DPO on the SFT adapter, reward,
GRPO, merge and continued pretraining; every artifact then reloads in a fresh process with stock
transformers/peft from another directory, and a model fine-tuned on one reply stops generating at
the family's end-of-turn token."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import tunesmith as ts
from families.tiny_models import FAMILIES, build, tokenizer_dir

warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
TRAIN = {"max_steps": 2, "batch_size": 4, "dtype": "fp32", "warmup_steps": 0, "logging_steps": 1,
         "save_steps": 10_000, "eval_steps": 10_000}
TASKS = {"names": ["upper"], "train_rows": 8, "eval_rows": 2, "max_new_tokens": 2}
RUN = {"sample_tokens": 0}
SHARED = ("llama3_1", "qwen3", "gemma3")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family in SHARED:
            tokenizer_dir(family)  # skips where ../shared is absent
        if family not in built:
            built[family] = build(family, tmp_path_factory.mktemp(family) / "model")
        return built[family]
    return get


RELOAD = r"""
import json, sys
from pathlib import Path
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
from peft import AutoPeftModelForCausalLM, AutoPeftModelForSequenceClassification
for kind, path in json.loads(sys.argv[1]):
    cls = {"adapter": AutoPeftModelForCausalLM, "full": AutoModelForCausalLM,
           "reward": AutoPeftModelForSequenceClassification}[kind]
    model = cls.from_pretrained(path, **({"num_labels": 1} if kind == "reward" else {}))  # one score
    ids = [[1, 2, 3]]
    import torch
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids))
    assert torch.isfinite(out.logits).all(), path
    print("ok", kind, Path(path).parent.name)
"""


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_stage_runs_and_every_artifact_reloads_in_stock_libraries(family, models, tmp_path):
    base = str(models(family))
    artifacts = []
    for method in ("lora", "qlora", "full"):
        r = ts.sft(model={"path": base}, adapter={"method": method, "rank": 4}, tasks=TASKS, train=TRAIN,
                   sft={"max_length": 96}, run={"dir": str(tmp_path / f"sft-{method}"), **RUN})
        assert r.metrics["steps"] == 2 and r.metrics["train_tokens"] > 0
        artifacts.append(("full" if method == "full" else "adapter", str(r.model_path)))
    sft = tmp_path / "sft-lora"
    dpo = ts.dpo(model={"path": str(sft)}, tasks=TASKS, train=TRAIN, dpo={"max_length": 96},
                 run={"dir": str(tmp_path / "dpo"), **RUN})           # on the SFT adapter: merged first
    artifacts += [("adapter", str(dpo.model_path)), ("full", str(sft / "merged"))]
    reward = ts.reward(model={"path": base}, tasks={**TASKS, "names": ["upper", "add"]}, train=TRAIN,
                       reward={"max_length": 96}, run={"dir": str(tmp_path / "reward"), **RUN})
    artifacts.append(("reward", str(reward.model_path)))
    grpo = ts.rlhf(model={"path": base}, tasks=TASKS, rl={"method": "grpo", "eval_samples": 1},
                   generation={"num_generations": 2, "max_new_tokens": 4}, rewards={"functions": ["format"]},
                   train=TRAIN, run={"dir": str(tmp_path / "grpo"), **RUN})
    artifacts.append(("adapter", str(grpo.model_path)))
    merged = ts.merge(str(sft / "model"), str(tmp_path / "merged"))
    artifacts.append(("full", str(merged)))
    corpus = tmp_path / "docs.txt"
    corpus.write_text("\n\n".join(f"The {i} boats came back to the harbour at dawn." for i in range(40)))
    cpt = ts.pretrain(model={"from_pretrained": base}, data={"train": str(corpus), "block_size": 16},
                      train={**TRAIN, "batch_size": 2}, run={"dir": str(tmp_path / "cpt"), **RUN})
    artifacts.append(("full", str(cpt.model_path)))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, "-c", RELOAD, json.dumps(artifacts)], cwd=elsewhere, capture_output=True,
                          text=True, timeout=600, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("ok ") == len(artifacts)


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_fine_tuned_reply_ends_at_the_family_end_of_turn_token(family, models, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = tmp_path / "one.jsonl"
    rows.write_text(json.dumps({"messages": [{"role": "user", "content": "Name a colour."},
                                             {"role": "assistant", "content": "Blue."}]}) + "\n")
    r = ts.sft(model={"path": str(models(family))}, adapter={"method": "full"}, data={"inputs": [{"path": str(rows)}]},
               sft={"max_length": 64}, train={**TRAIN, "max_steps": 30, "batch_size": 1, "lr": 3e-3},
               run={"dir": str(tmp_path / "memo"), **RUN})
    tok = AutoTokenizer.from_pretrained(r.model_path)
    model = AutoModelForCausalLM.from_pretrained(r.model_path)
    # Qwen3 without thinking: its template writes the empty <think></think> filler into the prompt
    # (sft.reasoning auto leaves that filler out of the loss for this reason)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Name a colour."}], add_generation_prompt=True,
                                     enable_thinking=False, return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=20, do_sample=False)[0, prompt["input_ids"].shape[1]:]
    end = tok.convert_tokens_to_ids(FAMILIES[family]["turn_end"])
    eos = model.generation_config.eos_token_id
    assert end in (eos if isinstance(eos, list) else [eos])      # generation stops there
    assert out.tolist()[-1] == end and len(out) < 20, tok.decode(out)
    assert "Blue." in tok.decode(out[:-1])


def test_tool_calling_and_reasoning_rows_train_on_qwen3(models, tmp_path):
    weather = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
    rows = [{"tools": [weather], "messages": [
        {"role": "user", "content": f"Weather in city {i}?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "id": f"c{i}", "function": {"name": "get_weather", "arguments": {"city": f"c{i}"}}}]},
        {"role": "tool", "tool_call_id": f"c{i}", "content": f"{i} C"},
        {"role": "assistant", "content": f"It is {i} C."}]} for i in range(4)]
    rows += [{"messages": [{"role": "user", "content": f"{i}+{i}?"},
                           {"role": "assistant", "content": str(2 * i), "reasoning_content": f"{i} twice."}]}
             for i in range(4)]
    data = tmp_path / "tools.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = ts.sft(model={"path": str(models("qwen3"))}, data={"inputs": [{"path": str(data)}]}, sft={"max_length": 256},
               train=TRAIN, run={"dir": str(tmp_path / "tools"), **RUN})
    assert r.metrics["steps"] == 2 and r.metrics["train_tokens"] > 0
    card = json.loads((tmp_path / "tools" / "data_card.json").read_text())
    assert card["steps"]["rows_kept"] == 8 and card["steps"]["filtered"] == 0   # call-only turns are not "empty"
