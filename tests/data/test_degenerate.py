"""Degenerate data is refused (or recorded), never trained on silently: preference pairs whose two
answers are the same, a configured text field the rows lack, an empty recipe, a validation split
that leaves no training row, rows dropped by weighted mixing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import assert_user_error, run_cli_here

from tunesmith.core.config import load_config
from tunesmith.core.errors import UserError
from tunesmith.data import DataPrepConfig, check_data, prepare
from tunesmith.data.readers import RawRow, read_rows, text_of

FIX = "drop the row or give a different rejected answer"


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from alignment._sft_fixtures import pretrained

    return pretrained("tiny", tmp_path_factory.getbasetemp())


def _pairs(tmp_path: Path) -> Path:
    """Four pairs: rows 2 (strings differing only in whitespace) and 3 (the same messages) are degenerate."""
    turn = [{"role": "assistant", "content": "Paris."}]
    return _write(tmp_path / "pairs.jsonl", [
        {"prompt": "Capital of Italy?", "chosen": "Rome.", "rejected": "Milan."},
        {"prompt": "Capital of Spain?", "chosen": "Madrid.", "rejected": " Madrid.\n"},
        {"prompt": [{"role": "user", "content": "Capital of France?"}], "chosen": turn, "rejected": list(turn)},
        {"prompt": "Capital of Peru?", "chosen": "Lima.", "rejected": "Cusco."}])


# 1. chosen == rejected

def test_data_check_refuses_pairs_whose_chosen_equals_rejected(tmp_path, capsys):
    path = _pairs(tmp_path)
    proc = run_cli_here(capsys, "data", "check", str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "rows: 4  good: 2  bad: 2" in proc.stdout
    for line in (2, 3):
        assert f'{path}:{line}: field "rejected" is identical to chosen ({FIX})' in proc.stdout, proc.stdout
    hh = tmp_path / "hh.jsonl"      # implicit pairs (whole conversations), HH transcript form
    hh.write_text(json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: hello",
                              "rejected": "\n\nHuman: hi\n\nAssistant: hello"}) + "\n")
    result = check_data(str(hh))
    assert not result.ok and str(result.problems[0]) == f'{hh}:1: field "rejected" is identical to chosen ({FIX})'
    code = _write(tmp_path / "code.jsonl", [{"prompt": "Write f.", "chosen": "def f():\n    return 1",
                                              "rejected": "def f():\nreturn 1"}])   # indentation is the answer
    assert check_data(str(code)).ok


def test_prepare_refuses_identical_pairs_naming_the_first_and_how_many(tmp_path, capsys):
    path = _pairs(tmp_path)
    before = _tree(tmp_path)
    proc = run_cli_here(capsys, "data", "prepare", "--inputs", f"[{{path: {path}}}]",
                        "--output.dir", str(tmp_path / "prepared"))
    assert_user_error(proc, f"{path}:2:", 'field "rejected"', "identical to chosen",
                      "2 of the 4 rows of this file", FIX)
    assert len(proc.stderr.strip().splitlines()) == 1
    assert _tree(tmp_path) == before                       # nothing written
    skipped = prepare(inputs=[{"path": str(path)}], on_bad_rows="skip")   # asked to skip: skipped, with a record
    assert skipped.dataset["train"].num_rows == 2 and skipped.card["steps"]["bad_rows_skipped"] == 2


def test_dpo_refuses_identical_pairs_before_training(tiny, tmp_path, capsys):
    path = _pairs(tmp_path)
    run = tmp_path / "run"
    proc = run_cli_here(capsys, "dpo", "--model.path", str(tiny), "--data.inputs", f"[{{path: {path}}}]",
                        "--train.max_steps", "1", "--train.dtype", "fp32", "--run.dir", str(run))
    assert_user_error(proc, f"{path}:2:", '"rejected"', "identical to chosen", FIX)
    assert not run.exists()


# 2. a configured text field the rows lack

def test_text_of_refuses_a_missing_configured_field_naming_the_fields_there_are(tmp_path):
    path = _write(tmp_path / "docs.jsonl", [{"text": "Tom had apples.", "id": 1}])
    row = next(read_rows(path))
    with pytest.raises(UserError) as e:
        text_of(row, "body")
    assert str(e.value) == (f'{path}:1: field "body" is missing; this row has the fields: text, id '
                            "(set data.text_field to the field that holds the text, e.g. --data.text_field text)")
    assert text_of(row, "text") == "Tom had apples."
    assert text_of(RawRow("a.parquet", 1, {"body": "x"}), "body") == "x"
    txt = tmp_path / "docs.txt"                   # plain text has no fields: its text whatever the field
    txt.write_text("First paragraph.\n\nSecond one.\n")
    assert [text_of(r, "body") for r in read_rows(txt)] == ["First paragraph.", "Second one."]


def test_pretrain_refuses_a_text_field_the_file_lacks(tmp_path, capsys):
    path = _write(tmp_path / "docs.jsonl", [{"text": f"Tom had {i} apples. He ate one."} for i in range(30)])
    run = tmp_path / "run"
    proc = run_cli_here(capsys, "pretrain", "--data.train", str(path), "--data.text_field", "body",
                        "--tokenizer.vocab_size", "300", "--train.max_steps", "1", "--run.dir", str(run))
    assert_user_error(proc, f"{path}:1:", 'field "body" is missing', "text")
    assert not run.exists()


# 3. an empty recipe

@pytest.mark.parametrize("text", ["", "\n   \n", "# only a comment\n\n# another\n", "{}\n"])
@pytest.mark.parametrize("command", [["data", "prepare"], ["sft"], ["pretrain"]])
def test_an_empty_recipe_is_refused(tmp_path, capsys, text, command):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    before = _tree(tmp_path)
    proc = run_cli_here(capsys, *command, str(recipe))
    assert_user_error(proc, str(recipe), "the recipe is empty; write at least one section, e.g. `tunesmith init <stage>`")
    assert len(proc.stderr.strip().splitlines()) == 1 and _tree(tmp_path) == before
    with pytest.raises(UserError, match="the recipe is empty"):
        load_config(DataPrepConfig, recipe)


@pytest.mark.parametrize("text,kind", [("- a\n- b\n", "list"), ("42\n", "number"), ("just words\n", "string")])
def test_a_recipe_that_is_not_a_mapping_is_one_line(tmp_path, capsys, text, kind):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    proc = run_cli_here(capsys, "sft", str(recipe))
    assert_user_error(proc, str(recipe), "must be a mapping of sections", f"got a YAML {kind}")
    assert len(proc.stderr.strip().splitlines()) == 1


# 4. a validation split that leaves no training row; what weighted mixing drops

def test_a_validation_split_of_too_few_rows_is_refused(tmp_path, capsys):
    one = _write(tmp_path / "one.jsonl", [{"instruction": "Add 1 and 2", "output": "3"}])
    out = tmp_path / "prepared"
    proc = run_cli_here(capsys, "data", "prepare", "--inputs", f"[{{path: {one}}}]", "--split.validation", "0.1",
                        "--output.dir", str(out))
    assert_user_error(proc, str(one), 'field "split.validation"', "1 prepared row",
                      "add rows, or set split.validation: 0")
    assert "Traceback" not in proc.stderr and not out.exists()
    three = _write(tmp_path / "three.jsonl", [{"text": f"row {w} here"} for w in ("one", "two", "three")])
    with pytest.raises(UserError, match=r'field "split.validation" validation size 3 is not smaller than the 3 '
                                        r"prepared rows \(of 3 read\).*set split.validation: 0"):
        prepare(inputs=[{"path": str(three)}], split={"validation": 3})
    with pytest.raises(UserError, match="validation fraction 0.9 of the 3 prepared rows"):
        prepare(inputs=[{"path": str(three)}], split={"validation": 0.9})
    parts = prepare(inputs=[{"path": str(three)}], split={"validation": 0.5}).dataset    # 1 left to train on
    assert (parts["train"].num_rows, parts["validation"].num_rows) == (1, 2)


def test_sft_names_data_split_validation_when_a_split_leaves_no_training_row(tiny, tmp_path, capsys):
    one = _write(tmp_path / "one.jsonl", [{"instruction": "Add 1 and 2", "output": "3"}])
    run = tmp_path / "run"
    proc = run_cli_here(capsys, "sft", "--model.path", str(tiny), "--data.inputs", f"[{{path: {one}}}]",
                        "--data.split.validation", "0.1", "--train.max_steps", "1", "--train.dtype", "fp32",
                        "--run.dir", str(run))
    assert_user_error(proc, str(one), 'field "data.split.validation"', "1 prepared row",
                      "set data.split.validation: 0")
    assert not run.exists()


def test_weighted_mixing_records_what_each_source_gave_and_what_was_dropped(tmp_path):
    a = _write(tmp_path / "a.jsonl", [{"text": f"alpha row number {i} " + "x" * i} for i in range(60)])
    b = _write(tmp_path / "b.jsonl", [{"text": f"beta row number {i} " + "y" * i} for i in range(10)])
    out = tmp_path / "prepared"
    result = prepare(inputs=[{"path": str(a), "weight": 1}, {"path": str(b), "weight": 1}], dedup={"near": False},
                     output={"dir": str(out), "format": "jsonl"})
    card = json.loads((out / "data_card.json").read_text())
    sa, sb = card["sources"]
    total = result.dataset["train"].num_rows
    assert (sa["path"], sa["rows"], sb["rows"]) == (str(a), 60, 10)
    assert sb["mixed"] == 10 and sb["mixing_dropped"] == 0          # first_exhausted: b runs out, the mix stops
    assert sa["mixed"] + sb["mixed"] == total and sa["mixing_dropped"] == 60 - sa["mixed"] > 0
    assert card["mixing"]["dropped"] == sa["mixing_dropped"] and card["mixing"]["stopping"] == "first_exhausted"
    md = (out / "data_card.md").read_text()
    assert (f"Weighted mixing (stopping: first_exhausted) dropped {sa['mixing_dropped']} rows "
            f"({a}: {sa['mixing_dropped']} of 60).") in md
    assert f"| mixing (weighted mixing, first_exhausted) | {sa['mixing_dropped']} | {total} |" in md
    assert "dropped 0 rows" not in result.render() and f"dropped {sa['mixing_dropped']} rows" in result.render()
    over = prepare(inputs=[{"path": str(a), "weight": 1, "limit": 20}, {"path": str(b), "weight": 1}],
                   dedup={"near": False}, split={"stopping": "all_exhausted"}).card
    sa, sb = over["sources"]
    assert sa["limit_dropped"] == 40 and sa["mixing_dropped"] == sb["mixing_dropped"] == 0
    assert sb["mixing_repeated"] == sb["mixed"] - 10 > 0 and over["mixing"]["repeated"] == sb["mixing_repeated"]
    plain = prepare(inputs=[{"path": str(a)}, {"path": str(b)}], dedup={"near": False}).card
    assert [s["mixed"] for s in plain["sources"]] == [60, 10] and plain["mixing"]["dropped"] == 0
