"""Embedded tasks: disjoint held-out splits, seeded generators, data-module formats, scorers."""
from __future__ import annotations

import json

import pytest
import torch

from tunesmith.alignment import toy_tasks as T
from tunesmith.core.errors import UserError
from tunesmith.data import prepare

from alignment._sft_fixtures import pretrained  # noqa: E402


@pytest.mark.parametrize("task", T.TASKS)
def test_heldout_never_overlaps_train(task):
    train = {e.prompt for seed in (0, 1, 2) for e in T.examples(task, 10_000, seed=seed)}
    held = {e.prompt for seed in (0, 1) for e in T.examples(task, 10_000, seed=seed, split="heldout")}
    assert held and train and not train & held
    assert 0.1 < len(held) / (len(train) + len(held)) < 0.3      # ~20% of each item space is held out


def test_answers_are_correct_and_wrong_answers_differ():
    for e in T.examples(T.TASKS, 500, seed=3):
        assert e.answer != e.wrong
        words = e.prompt.split(": ")[-1]
        if e.task == "add":
            a, b = [int(x) for x in e.prompt[8:-1].split(" plus ")]
            assert int(e.answer) == a + b and abs(int(e.wrong) - (a + b)) == 1
        elif e.task == "reverse":
            assert e.answer == " ".join(reversed(words.split()))
        elif e.task == "sort":
            assert e.answer == " ".join(sorted(words.split()))
        elif e.task == "upper":
            assert e.answer == words.upper()
        else:
            assert e.answer == f"[{words}]"


def test_generators_are_seeded_and_balanced():
    a, b = T.instruction_rows(T.TASKS, 50, seed=7), T.instruction_rows(T.TASKS, 50, seed=7)
    assert a == b and a != T.instruction_rows(T.TASKS, 50, seed=8)
    assert [r["task"] for r in a[:5]] == list(T.TASKS)          # round robin over tasks
    assert len({r["messages"][0]["content"] for r in a}) == 50   # distinct rows
    assert len(T.kto_rows("add", 10)) == 20 and {r["label"] for r in T.kto_rows("add", 10)} == {True, False}
    with pytest.raises(UserError, match="unknown task 'mul'"):
        T.instruction_rows(["mul"], 3)


@pytest.mark.parametrize("make,fmt", [(T.instruction_rows, "messages"), (T.preference_rows, "preference"),
                                      (T.kto_rows, "kto")])
def test_rows_are_in_the_data_module_formats(tmp_path, make, fmt):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in make(T.TASKS, 40, seed=0)))
    result = prepare(inputs=[{"path": str(path)}], dedup={"exact": False, "near": False})
    assert result.card["formats"][str(path)] == fmt
    assert result.dataset["train"].num_rows == (80 if fmt == "kto" else 40)


def test_normalize_and_reward_functions():
    assert T.normalize("  a  k d.<|im_end|>x") == "a k d"
    assert T.normalize("FOX\nmore") == "FOX" and T.normalize("fox") != T.normalize("FOX")
    conv = [[{"role": "assistant", "content": " 7 "}], [{"role": "assistant", "content": "8"}]]
    assert T.exact_match_reward(None, conv, answer=["7", "7"]) == [1.0, 0.0]
    assert T.format_reward(None, ["12", "a b c", "ABC", "[dog]", "dog", "a b"],
                           task=["add", "sort", "upper", "brackets", "brackets", "reverse"]) == [.5, .5, .5, .5, 0, 0]
    assert T.REWARD_FUNCTIONS["exact_match"] is T.exact_match_reward


def test_exact_match_scores_greedy_generations(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    from tunesmith.alignment.common import ModelSection, load_tokenizer

    path = pretrained("tiny", tmp_path_factory.getbasetemp())
    tok = load_tokenizer(ModelSection(path=str(path)))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path)
    rows = T.instruction_rows(["add", "upper"], 6, split="heldout")
    outputs = T.generate_answers(model, tok, [r["messages"][:1] for r in rows], max_new_tokens=4)
    assert outputs == T.generate_answers(model, tok, [r["messages"][:1] for r in rows], max_new_tokens=4)
    right = [dict(r, answer=o + " ") for r, o in zip(rows, outputs)]   # normalization strips the space
    assert T.exact_match(model, tok, right, max_new_tokens=4) == 1.0
    wrong = [dict(r, answer="zz" + o) for r, o in zip(rows, outputs)]
    report = T.exact_match_report(model, tok, right[:3] + wrong[3:], max_new_tokens=4)
    assert report["accuracy"] == 0.5 and report["n"] == 6
