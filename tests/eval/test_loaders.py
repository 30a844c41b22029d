"""Local loaders read the real shared GLUE/SuperGLUE files with the right counts and labels,
and reject bad input with a UserError naming file, line and field."""
import collections
import json

import pytest

from tunesmith.core.errors import UserError
from tunesmith.eval.loaders import load_split, parse_label, subsample
from tunesmith.eval.tasks import get_task, resolve_tasks

GLUE_COUNTS = {"sst2": 872, "cola": 1043, "mrpc": 408, "rte": 277, "stsb": 1500, "wnli": 71, "qnli": 5463}
SUPERGLUE_COUNTS = {"boolq": 3270, "cb": 56, "copa": 100, "wic": 638, "wsc": 104, "rte": 277}


@pytest.mark.parametrize("name,count", GLUE_COUNTS.items())
def test_glue_dev_row_counts(glue_dir, name, count):
    assert len(load_split(get_task("glue", name), "validation", data_dir=glue_dir)) == count


@pytest.mark.parametrize("name,count", SUPERGLUE_COUNTS.items())
def test_superglue_val_row_counts(superglue_dir, name, count):
    assert len(load_split(get_task("superglue", name), "validation", data_dir=superglue_dir)) == count


def test_glue_format_details(glue_dir):
    cola = load_split(get_task("glue", "cola"), "validation", data_dir=glue_dir)  # no header
    assert collections.Counter(r["label"] for r in cola) == {1: 721, 0: 322}
    assert cola[0]["sentence"] == "The sailors rode the breeze clear of the rocks."
    mrpc = load_split(get_task("glue", "mrpc"), "validation", data_dir=glue_dir)  # BOM header, raw quotes
    assert collections.Counter(r["label"] for r in mrpc) == {1: 279, 0: 129}
    assert mrpc[0]["sentence2"].startswith('"The foodservice pie business')
    rte = load_split(get_task("glue", "rte"), "validation", data_dir=glue_dir)  # names -> Hub ids
    assert collections.Counter(r["label"] for r in rte) == {0: 146, 1: 131}  # 0 = entailment
    stsb = load_split(get_task("glue", "stsb"), "validation", data_dir=glue_dir)
    assert stsb[0]["label"] == 5.0 and stsb[1]["label"] == 4.75
    # a parent folder holding glue/ works too
    assert len(load_split(get_task("glue", "wnli"), "validation", data_dir=glue_dir.parent)) == 71


def test_superglue_flattening_and_labels(superglue_dir):
    multirc = load_split(get_task("superglue", "multirc"), "validation", data_dir=superglue_dir)
    questions = {(r["idx"]["paragraph"], r["idx"]["question"]) for r in multirc}
    assert (len(multirc), len(questions)) == (4848, 953)
    boolq = load_split(get_task("superglue", "boolq"), "validation", data_dir=superglue_dir)
    assert sum(r["label"] for r in boolq) == 2033
    wsc = load_split(get_task("superglue", "wsc"), "validation", data_dir=superglue_dir)
    assert wsc[0]["span2_text"] == "him" and wsc[0]["label"] == 0
    axg = load_split(get_task("superglue", "axg"), "test", data_dir=superglue_dir)  # labelled diagnostic
    assert len(axg) == 356 and collections.Counter(r["label"] for r in axg) == {0: 178, 1: 178}
    assert len(load_split(get_task("superglue", "cb"), "fewglue32", data_dir=superglue_dir)) == 32


def test_string_booleans_read_like_json_booleans(superglue_dir, tmp_path):
    lines = open(superglue_dir / "BoolQ" / "val.jsonl", encoding="utf-8").readlines()[:40]
    (tmp_path / "BoolQ").mkdir()
    with open(tmp_path / "BoolQ" / "val.jsonl", "w", encoding="utf-8") as f:
        for line in lines:
            row = json.loads(line)
            row["label"] = "true" if row["label"] else "false"
            f.write(json.dumps(row) + "\n")
    task = get_task("superglue", "boolq")
    original = load_split(task, "validation", data_dir=superglue_dir)[:40]
    assert load_split(task, "validation", data_dir=tmp_path) == original


def test_record_local_format(tmp_path):
    text = "Paris is in France.\n@highlight\nThe Eiffel Tower is in Paris"
    rec = {"idx": 3, "passage": {"text": text, "entities": [{"start": 0, "end": 4}, {"start": 12, "end": 17},
                                                            {"start": 54, "end": 58}]},
           "qas": [{"idx": 7, "query": "@placeholder is a country.", "answers": [{"start": 12, "end": 17,
                                                                                  "text": "France"}]}]}
    (tmp_path / "ReCoRD").mkdir()
    (tmp_path / "ReCoRD" / "val.jsonl").write_text(json.dumps(rec) + "\n")
    rows = load_split(get_task("superglue", "record"), "validation", data_dir=tmp_path)
    assert rows == [{"passage": text, "query": "@placeholder is a country.", "entities": ["Paris", "France"],
                     "answers": ["France"], "idx": {"passage": 3, "query": 7}, "label": -1}]


def test_wrong_label_values_name_file_line_and_field(tmp_path):
    (tmp_path / "CB").mkdir()
    good = {"premise": "p", "hypothesis": "h", "label": "neutral", "idx": 0}
    bad = {**good, "label": "maybe", "idx": 1}
    (tmp_path / "CB" / "val.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(UserError) as err:
        load_split(get_task("superglue", "cb"), "validation", data_dir=tmp_path)
    assert str(err.value).startswith(f'{tmp_path / "CB" / "val.jsonl"}:2: field "label" invalid CB label')
    assert "entailment, contradiction, neutral" in str(err.value)
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "dev.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t7\n")
    with pytest.raises(UserError, match=r"dev.tsv:3: field \"label\""):
        load_split(get_task("glue", "sst2"), "validation", data_dir=tmp_path)
    with pytest.raises(UserError, match="similarity score between 0 and 5"):
        parse_label(get_task("glue", "stsb"), "7.5")


def test_missing_column_split_and_file(tmp_path, glue_dir):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "dev.tsv").write_text("index\tsentence1\tlabel\n0\ta\tentailment\n")
    with pytest.raises(UserError, match='missing column "sentence2"'):
        load_split(get_task("glue", "rte"), "validation", data_dir=tmp_path)
    with pytest.raises(UserError, match='has no "validation" split'):
        load_split(get_task("superglue", "axb"), "validation", data_dir=tmp_path)
    with pytest.raises(UserError, match="MNLI-m validation file not found"):
        load_split(get_task("glue", "mnli_matched"), "validation", data_dir=glue_dir)
    with pytest.raises(UserError, match="no local data folder"):
        load_split(get_task("glue", "rte"), "validation")


def test_unknown_task_names_suggest_the_closest():
    with pytest.raises(UserError, match='unknown glue task "sst3".*did you mean "sst2"'):
        get_task("glue", "sst3")
    with pytest.raises(UserError, match='unknown benchmark "glu"'):
        resolve_tasks("glu", "rte")
    assert [t.name for t in resolve_tasks("glue", "SST-2,mnli,sst2")] == ["sst2", "mnli_matched", "mnli_mismatched"]
    assert len(resolve_tasks("superglue", "all")) == 10 and len(resolve_tasks("glue", None)) == 11


def test_hub_source_offline_is_a_user_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="could not load nyu-mll/glue"):
        load_split(get_task("glue", "rte"), "validation", source="hub")


def test_subsample_keeps_groups_whole(superglue_dir):
    task = get_task("superglue", "multirc")
    rows = load_split(task, "validation", data_dir=superglue_dir)
    picked = subsample(rows, 50, seed=1, task=task)
    by_q = collections.Counter((r["idx"]["paragraph"], r["idx"]["question"]) for r in picked)
    full = collections.Counter((r["idx"]["paragraph"], r["idx"]["question"]) for r in rows)
    assert len(picked) >= 50 and all(full[q] == n for q, n in by_q.items())
    axg = load_split(get_task("superglue", "axg"), "test", data_dir=superglue_dir)
    pairs = subsample(axg, 11, seed=0, task=get_task("superglue", "axg"))
    assert len(pairs) == 12 and all(pairs[i]["hypothesis"] == pairs[i + 1]["hypothesis"] for i in range(0, 12, 2))
    assert subsample(rows, 10, seed=3) == subsample(rows, 10, seed=3) != subsample(rows, 10, seed=4)
