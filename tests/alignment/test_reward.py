"""Reward-model stage: held-out pairwise accuracy rises with LoRA and QLoRA, the saved model
scores pairs the same way after reloading, bad input gives one clear error."""
from __future__ import annotations

import json

import pytest

from alignment.test_rl_fixtures import nano_base, train  # noqa: F401  (session fixture)
from tunesmith.alignment import toy_tasks as task_lib
from tunesmith.alignment.reward import reward
from tunesmith.alignment.rl import load_reward_model, score_with_model
from tunesmith.core.errors import UserError

TASKS = {"names": ["add", "upper"], "train_rows": 400, "eval_rows": 100}


def _run(base, tmp_path, method: str, seed: int = 0, steps: int = 30):
    return reward(model={"path": str(base)}, adapter={"method": method, "rank": 8},
                  tasks=TASKS, train=train(max_steps=steps, batch_size=16, lr=3e-3, seed=seed),
                  run={"dir": str(tmp_path / f"reward_{method}_{seed}")})


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_heldout_pair_accuracy_rises(nano_base, tmp_path, method):
    # 48 held-out pairs (add + upper items never trained on), 60-step nano base, 30 steps. Seeds 0-3:
    # AVX2-only EPYC: LoRA 0.31-0.56 -> 0.69-0.75, QLoRA 0.31-0.58 -> 0.71-0.73; AVX512-BF16 EPYC
    # (Zen 4): LoRA 0.31-0.56 -> 0.667-0.75, QLoRA 0.31-0.58 -> 0.6875-0.73 (seed 0, this test's:
    # 0.667 / 0.6875); 60 steps do no better (0.646-0.708). The untrained head's accuracy depends on
    # its random init; a chance-level scorer has sd ~0.072 on 48 pairs. Thresholds: final >= 0.6
    # (3 pairs below the worst of 16 runs, whose finals spread 0.083) and a gain of >= 0.05 (the
    # smallest observed gain is 0.104).
    result = _run(nano_base, tmp_path, method)
    m = result.metrics
    assert m["eval_pairs"] == 48 and m["train_pairs_too_long"] == 0
    assert m["eval_accuracy"] >= 0.6, m
    assert m["eval_accuracy"] >= m["initial_eval_accuracy"] + 0.05, m
    saved = json.loads((result.run_dir / "results.json").read_text())
    assert saved["metrics"]["eval_accuracy"] == m["eval_accuracy"]
    assert (result.model_path / "adapter_config.json").is_file()

    # the saved folder, reloaded as an RLHF reward model, ranks the held-out pairs as in training
    scorer = load_reward_model(str(result.model_path))
    rows = task_lib.preference_rows(TASKS["names"], TASKS["eval_rows"], seed=1, split="heldout")
    chosen = score_with_model(scorer, [r["prompt"] for r in rows], [r["chosen"] for r in rows])
    rejected = score_with_model(scorer, [r["prompt"] for r in rows], [r["rejected"] for r in rows])
    accuracy = sum(c > r for c, r in zip(chosen, rejected)) / len(rows)
    tolerance = 0.05 if method == "qlora" else 1e-6  # 4-bit: merged vs unmerged rounding differs
    assert abs(accuracy - m["eval_accuracy"]) <= tolerance, (accuracy, m["eval_accuracy"])


def test_causal_lm_task_is_refused(nano_base, tmp_path):
    with pytest.raises(UserError, match='field "adapter.task".*seq_cls'):
        reward(model={"path": str(nano_base)}, adapter={"task": "causal_lm"}, tasks=TASKS,
               run={"dir": str(tmp_path / "r")})


def test_instruction_data_is_refused(nano_base, tmp_path):
    rows = tmp_path / "sft.jsonl"
    rows.write_text(json.dumps({"instruction": "Say hi", "output": "hi"}) + "\n")
    with pytest.raises(UserError, match="sft.jsonl.*preference pairs"):
        reward(model={"path": str(nano_base)}, data={"inputs": [{"path": str(rows)}]},
               run={"dir": str(tmp_path / "r")})


def test_no_heldout_pairs_is_refused(nano_base, tmp_path):
    rows = tmp_path / "pairs.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in task_lib.preference_rows("add", 20)))
    with pytest.raises(UserError, match='field "data.split.validation"'):
        reward(model={"path": str(nano_base)}, data={"inputs": [{"path": str(rows)}]},
               run={"dir": str(tmp_path / "r")})
