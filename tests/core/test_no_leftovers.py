"""The failure contract, stage by stage: a bad input found while the stage loads (data, model,
settings) is one `error:` line, exit 2, and leaves no run folder behind (or, under
`run.overwrite`, the previous run as it was)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignment._sft_fixtures import pretrained
from helpers import assert_user_error, run_cli_here

ALIGN = ["--train.max_steps", "1", "--train.batch_size", "4", "--train.dtype", "fp32", "--tasks.train_rows", "8",
         "--tasks.eval_rows", "2"]


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return str(pretrained("tiny", tmp_path_factory.getbasetemp()))


def _same_pairs(d: Path) -> list[str]:
    return ["--data.inputs", f"[{{path: {_jsonl(d / 'same.jsonl', [{'prompt': 'Hi', 'chosen': 'Yo', 'rejected': 'Yo'}] * 4)}}}]"]


# stage -> (arguments given the tiny model folder and a scratch folder, fragments of the error line)
CASES = {
    "pretrain-batch": (lambda m, d: ["pretrain", "--train.batch_size", "6", "--train.micro_batch_size", "4"],
                       ["train.batch_size"]),
    "pretrain-text-field": (lambda m, d: ["pretrain", "--data.train", _jsonl(d / "t.jsonl", [{"text": "a b c"}] * 4),
                                          "--data.text_field", "body"], ['"body"']),
    "sft-batch": (lambda m, d: ["sft", "--model.path", m, "--tasks.names", "[add]", *ALIGN,
                                "--train.batch_size", "5", "--train.micro_batch_size", "2"], ["train.batch_size"]),
    "sft-one-row-split": (lambda m, d: ["sft", "--model.path", m, *ALIGN, "--data.split.validation", "0.1",
                                        "--data.inputs", f"[{{path: {_jsonl(d / 'one.jsonl', [{'prompt': 'a', 'completion': 'b'}])}}}]"],
                          ["data.split.validation"]),
    "dpo-identical-pairs": (lambda m, d: ["dpo", "--model.path", m, *ALIGN, *_same_pairs(d)], ['"rejected"']),
    "kto-identical-pairs": (lambda m, d: ["kto", "--model.path", m, *ALIGN, *_same_pairs(d)], ['"rejected"']),
    "orpo-adapter-folder-missing": (lambda m, d: ["orpo", "--model.path", str(d / "nothing"), *ALIGN,
                                                  "--tasks.names", "[add]"], ["model folder not found"]),
    "simpo-identical-pairs": (lambda m, d: ["simpo", "--model.path", m, *ALIGN, *_same_pairs(d)], ['"rejected"']),
    "reward-too-few-pairs": (lambda m, d: ["reward", "--model.path", m, *ALIGN, "--data.split.validation", "0.5",
                                           "--data.inputs", f"[{{path: {_jsonl(d / 'p.jsonl', [{'prompt': 'a', 'chosen': 'b', 'rejected': 'c'}])}}}]"],
                             ["data.split.validation"]),
    "rlhf-long-prompt": (lambda m, d: ["rlhf", "--model.path", m, *ALIGN, "--tasks.names", "[upper]",
                                       "--generation.max_prompt_length", "2", "--rewards.functions", "[format]"],
                         ["generation.max_prompt_length"]),
    "distill-no-teacher": (lambda m, d: ["distill", "--model.path", m, "--teacher.path", str(d / "none"), *ALIGN,
                                         "--tasks.names", "[add]"], ["model folder not found"]),
    "finetune-one-label": (lambda m, d: ["finetune", "--model", m, "--train.max_steps", "1", "--data.train",
                                         _jsonl(d / "c.jsonl", [{"text": f"row {i}", "label": 1} for i in range(6)])],
                           ["single label"]),
    "eval-no-task-data": (lambda m, d: ["eval", "glue", "--model", m, "--tasks", "rte", "--data", str(d / "none")],
                          ["none"]),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_leaves_no_run_folder(case, tiny, tmp_path, capsys):
    argv, fragments = CASES[case]
    run = tmp_path / "run"
    proc = run_cli_here(capsys, *argv(tiny, tmp_path), "--run.dir", str(run), "--quiet")
    assert_user_error(proc, *fragments)
    assert not run.exists(), sorted(p.name for p in run.iterdir())


def test_bad_input_under_overwrite_keeps_the_previous_run(tiny, tmp_path, capsys):
    run = tmp_path / "run"
    good = ["sft", "--model.path", tiny, "--tasks.names", "[add]", *ALIGN, "--sft.max_length", "64", "--quiet"]
    assert run_cli_here(capsys, *good, "--run.dir", str(run), "--run.sample_tokens", "0").returncode == 0
    before = {p.relative_to(run): p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    proc = run_cli_here(capsys, "sft", "--model.path", tiny, *ALIGN, *_same_pairs(tmp_path), "--run.dir", str(run),
                        "--run.overwrite", "true", "--quiet")
    assert_user_error(proc, '"rejected"')
    assert {p.relative_to(run): p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before
