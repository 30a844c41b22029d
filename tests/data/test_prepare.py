"""The preparation stage end to end: cleaning, dedup, PII, mixing, splits, outputs, data card."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from datasets import load_from_disk

from tunesmith.core.config import load_config
from tunesmith.core.errors import UserError
from tunesmith.data.clean import clean_text
from tunesmith.data.config import CleanConfig, DataPrepConfig
from tunesmith.data.prepare import prepare


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _paragraphs(n: int, words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    return [" ".join(rng.choice(vocab) for _ in range(words)) for _ in range(n)]


def test_dedup_removes_planted_duplicates_and_keeps_distinct_rows(tmp_path: Path) -> None:
    distinct = _paragraphs(40, 80, seed=1)
    rows = [{"text": t} for t in distinct]
    rng = random.Random(2)
    for i in range(10):                      # near duplicates: one word changed (Jaccard ~0.88)
        words = distinct[i].split()
        words[rng.randrange(80)] = "changed"
        rows.append({"text": " ".join(words)})
    for i in range(10, 15):                  # exact duplicates up to case and spacing
        rows.append({"text": "  " + distinct[i].upper().replace(" ", "   ")})
    path = _write(tmp_path / "pre.jsonl", rows)
    out = tmp_path / "out"
    result = prepare({"inputs": [{"path": str(path)}], "output": {"dir": str(out)}, "split": {"shuffle": False}})
    steps = result.card["steps"]
    assert (steps["exact_duplicates"], steps["near_duplicates"], steps["rows_kept"]) == (5, 10, 40)
    assert list(result.dataset["train"]["text"]) == distinct
    report = [json.loads(l) for l in (out / "duplicates.jsonl").read_text().splitlines()]
    assert [(r["removed"].split(":")[-1], r["kept"].split(":")[-1], r["kind"]) for r in report] == (
        [(str(41 + i), str(1 + i), "near") for i in range(10)] + [(str(51 + i), str(11 + i), "exact") for i in range(5)])
    assert all(0.8 <= r["similarity"] < 1 for r in report[:10])


def test_cleaning_normalizes_text_and_filters_with_a_reason(tmp_path: Path) -> None:
    assert clean_text("A\u00a0b \u200bc\x07  \r\nnext\n\n\n\nend ", CleanConfig()) == "A b c\nnext\n\nend"
    assert clean_text("\ufb01ne", CleanConfig(unicode="NFKC")) == "fine"
    rows = [{"text": "a good normal sentence"}, {"text": "ok"}, {"text": "1234 5678 %%%% 9999 ~~~~"},
            {"text": "spam\nspam\nspam\nspam\nreal"}, {"text": "aaaaaaaaaaaaaaaaaaaaaaa!"}, {"text": " \u200b "}]
    path = _write(tmp_path / "c.jsonl", rows)
    result = prepare({"inputs": [{"path": str(path)}], "output": {"dir": str(tmp_path / "o")},
                      "clean": {"min_chars": 3, "min_alpha_ratio": 0.5, "max_repeated_line_ratio": 0.5, "max_char_run": 10}})
    assert list(result.dataset["train"]["text"]) == ["a good normal sentence"]
    assert result.card["steps"]["filter_reasons"] == {"min_chars": 1, "min_alpha_ratio": 1, "max_repeated_line_ratio": 1,
                                                      "max_char_run": 1, "text is empty after cleaning": 1}
    filtered = (tmp_path / "o" / "filtered_rows.jsonl").read_text().splitlines()
    assert json.loads(filtered[0]) == {"row": f"{path}:2", "reason": "min_chars: 2 < 3"}


def test_split_by_ratio_and_count_is_seeded(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.jsonl", [{"text": t} for t in _paragraphs(50, 12, seed=3)])
    a = prepare(inputs=[{"path": str(path)}], split={"validation": 0.2}, seed=7).dataset
    b = prepare(inputs=[{"path": str(path)}], split={"validation": 0.2}, seed=7).dataset
    c = prepare(inputs=[{"path": str(path)}], split={"validation": 0.2}, seed=8).dataset
    assert (a["train"].num_rows, a["validation"].num_rows) == (40, 10)
    assert list(a["validation"]["text"]) == list(b["validation"]["text"]) != list(c["validation"]["text"])
    assert sorted(list(a["train"]["text"]) + list(a["validation"]["text"])) == sorted(_paragraphs(50, 12, seed=3))
    d = prepare(inputs=[{"path": str(path)}], split={"validation": 5}).dataset
    assert d["validation"].num_rows == 5
    with pytest.raises(UserError, match='field "split.validation" validation size 50 is not smaller than the 50'):
        prepare(inputs=[{"path": str(path)}], split={"validation": 50})


def test_weighted_mixing_and_limits(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", [{"text": f"alpha row {t}"} for t in _paragraphs(300, 6, seed=4)])
    b = _write(tmp_path / "b.jsonl", [{"text": f"beta row {t}"} for t in _paragraphs(300, 6, seed=5)])
    ds = prepare(inputs=[{"path": str(a), "weight": 3}, {"path": str(b), "weight": 1}],
                 dedup={"near": False}).dataset["train"]
    share = sum(t.startswith("alpha") for t in ds["text"]) / ds.num_rows
    assert 0.68 < share < 0.82          # 3:1 weights -> 0.75 of rows from a, until a runs out
    limited = prepare(inputs=[{"path": str(a), "limit": 10}, {"path": str(b), "limit": 5}], dedup={"near": False})
    assert limited.dataset["train"].num_rows == 15


def test_alpaca_and_sharegpt_mix_as_conversations(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", [{"instruction": "Add 2 and 2", "output": "4"}])
    b = _write(tmp_path / "b.jsonl", [{"conversations": [{"from": "human", "value": "Hi there"},
                                                         {"from": "gpt", "value": "Hello"}]}])
    result = prepare(inputs=[{"path": str(a)}, {"path": str(b)}], split={"shuffle": False})
    assert result.card["kind"] == "conversational"
    assert list(result.dataset["train"]["messages"]) == [
        [{"role": "user", "content": "Add 2 and 2"}, {"role": "assistant", "content": "4"}],
        [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello"}]]


def test_pii_is_replaced_during_prepare(tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": "Email jane.doe@example.com or call +44 20 7946 0958"},
                          {"role": "assistant", "content": "Card 4111 1111 1111 1111 noted, not 4111 1111 1111 1112."}]}]
    path = _write(tmp_path / "p.jsonl", rows)
    result = prepare(inputs=[{"path": str(path)}], pii={"enabled": True})
    msgs = result.dataset["train"][0]["messages"]
    assert msgs[0]["content"] == "Email <EMAIL> or call <PHONE>"
    assert msgs[1]["content"] == "Card <CREDIT_CARD> noted, not 4111 1111 1111 1112."
    assert result.card["steps"]["pii_replaced"] == {"EMAIL": 1, "PHONE": 1, "CREDIT_CARD": 1}


def test_outputs_are_written_whole_and_never_over_existing_data(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.jsonl", [{"text": t} for t in _paragraphs(20, 10, seed=6)])
    out = tmp_path / "prepared"
    prepare(inputs=[{"path": str(path)}], split={"validation": 0.25}, output={"dir": str(out), "format": "jsonl"})
    assert sorted(p.name for p in out.iterdir()) == ["data_card.json", "data_card.md", "train.jsonl", "validation.jsonl"]
    assert len((out / "validation.jsonl").read_text().splitlines()) == 5
    card = (out / "data_card.md").read_text()
    assert "| read | | 20 |" in card and "| validation | 5 |" in card and "## Length of train rows (characters)" in card
    with pytest.raises(UserError, match="output folder exists and is not empty"):
        prepare(inputs=[{"path": str(path)}], output={"dir": str(out)})
    prepare(inputs=[{"path": str(path)}], output={"dir": str(out), "overwrite": True})
    assert load_from_disk(str(out))["train"].num_rows == 20
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".prepared")]   # no temp folders left


def test_config_from_yaml_and_flags(tmp_path: Path) -> None:
    recipe = tmp_path / "data.yaml"
    recipe.write_text("inputs:\n  - path: train.jsonl\n    weight: 2\ncolumns: {question: instruction}\n"
                      "dedup: {threshold: 0.9}\n")
    cfg = load_config(DataPrepConfig, recipe, ["--split.validation", "0.1", "--on_bad_rows", "skip"])
    assert (cfg.inputs[0].weight, cfg.columns, cfg.dedup.threshold, cfg.split.validation, cfg.on_bad_rows) == (
        2, {"question": "instruction"}, 0.9, 0.1, "skip")
    with pytest.raises(UserError, match='unknown config key "dedup.treshold"; did you mean "threshold"'):
        load_config(DataPrepConfig, None, ["--dedup.treshold", "0.5"])
    with pytest.raises(UserError, match='config key "on_bad_rows"'):
        load_config(DataPrepConfig, None, ["--on_bad_rows", "ignore"])


def test_preference_prepare_on_real_hh_rlhf(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "corpora" / "hh_harmless_base_test.jsonl.gz"
    result = prepare(inputs=[{"path": str(path), "limit": 200}], on_bad_rows="skip", output={"dir": str(tmp_path / "o")})
    row = result.dataset["train"][0]
    assert set(row) == {"prompt", "chosen", "rejected"}
    assert row["prompt"][-1]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
    assert result.card["steps"]["bad_rows_skipped"] == 13 and result.dataset["train"].num_rows == 200
    skipped = (tmp_path / "o" / "skipped_rows.jsonl").read_text().splitlines()
    assert len(skipped) == 13 and json.loads(skipped[0])["line"] == 87


def test_no_data_cache_is_left_in_tmpdir_after_the_process(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"text": f"row number {i} of the file"}) + "\n" for i in range(20)))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    code = ("import sys; from tunesmith.data.prepare import prepare; "
            "r = prepare({'inputs': [{'path': sys.argv[1]}]}); print(r.dataset['train'].num_rows)")
    out = subprocess.run([sys.executable, "-c", code, str(data)], capture_output=True, text=True,
                         env={**os.environ, "TMPDIR": str(tmp)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) > 0
    assert not [p.name for p in tmp.iterdir() if p.name.startswith("tunesmith-data-")]


def test_an_input_with_role_validation_is_the_validation_split(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.jsonl", [{"text": t} for t in _paragraphs(30, 12, seed=3)])
    held = _paragraphs(6, 12, seed=4)
    # one validation row repeats a training row: dropped as a duplicate (no leak into validation)
    first_train = json.loads(train.read_text().splitlines()[0])["text"]
    valid = _write(tmp_path / "valid.jsonl", [{"text": t} for t in held] + [{"text": first_train}])
    out = prepare(inputs=[{"path": str(train)}, {"path": str(valid), "role": "validation"}], split={"max_rows": 20})
    ds = out.dataset
    assert sorted(ds["validation"]["text"]) == sorted(held)     # every row of the file, as is, and only those
    assert ds["train"].num_rows == 20 and not set(ds["train"]["text"]) & set(held)  # max_rows cuts train only
    roles = [s.get("role", "train") for s in out.card["sources"]]
    assert roles == ["train", "validation"] and out.card["sources"][1]["mixed"] == 0
    with pytest.raises(UserError, match='field "split.validation" both a validation input and a validation split'):
        prepare(inputs=[{"path": str(train)}, {"path": str(valid), "role": "validation"}], split={"validation": 0.1})
    with pytest.raises(UserError, match="nothing to train on"):
        prepare(inputs=[{"path": str(valid), "role": "validation"}])
