"""Load GLUE/SuperGLUE splits from a local folder in the official layout, or from the Hub.

Either way a split comes back as a list of dicts in the Hub schema (`nyu-mll/glue`,
`aps/super_glue`): the same field names, integer label ids in the Hub's order (a float
score for STS-B, -1 where a test split has no labels), MultiRC flattened to one row per
answer with `idx = {paragraph, question, answer}`, ReCoRD to one row per query.

Local files are read strictly: GLUE TSVs with no CSV quoting (fields hold raw quotes),
a UTF-8 BOM stripped (MRPC), CoLA without a header; SuperGLUE JSONL with labels as JSON
booleans, "true"/"false" strings, names or ids. A bad row raises `UserError` naming the
file, the line, the field and the valid values; nothing is dropped silently.

rows = load_split(get_task("glue", "rte"), "validation", data_dir="../shared/data/glue")
len(rows), rows[0]["label"]
# -> (277, 1)
"""
from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path
from typing import Any

from ..core.errors import UserError
from .tasks import Task

HUB_REPOS = {"glue": "nyu-mll/glue", "superglue": "aps/super_glue"}
_HUB_CONFIG = {"wsc": "wsc.fixed"}
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}

csv.field_size_limit(1 << 26)


def split_path(task: Task, split: str, data_dir: str | os.PathLike) -> Path:
    """Where `split` of `task` lives under a local benchmark folder (or its parent).

    split_path(get_task("superglue", "cb"), "validation", "data/superglue").name
    # -> 'val.jsonl'
    """
    if split not in task.files:
        raise UserError(f'{task.title} has no "{split}" split', field="data.split",
                        fix=f"choose one of {', '.join(task.files)}")
    root = Path(data_dir)
    if (root / task.benchmark).is_dir() and not (root / task.folder).is_dir():
        root = root / task.benchmark
    ext = ".tsv" if task.benchmark == "glue" else ".jsonl"
    return root / task.folder / (task.files[split] + ext)


def load_split(task: Task, split: str, *, data_dir: str | os.PathLike | None = None,
               source: str = "local") -> list[dict[str, Any]]:
    """Rows of one split, from `data_dir` (source="local") or the Hub (source="hub").

    rows = load_split(get_task("superglue", "boolq"), "validation", data_dir="data/superglue")
    """
    if source == "hub":
        return _load_hub(task, split)
    if source != "local":
        raise UserError(f'unknown data source "{source}"', field="data.source", fix="use local or hub")
    if data_dir is None:
        raise UserError("no local data folder given", field="data.dir",
                        fix=f"point --data.dir at a folder in the official {task.benchmark} layout, "
                            "or use --data.source hub")
    path = split_path(task, split, data_dir)
    if not path.is_file():
        raise UserError(f"{task.title} {split} file not found", file=path,
                        fix=f"expected the official layout <dir>/{task.folder}/{path.name}")
    labelled = split != "test"  # test files may lack labels (then -1); the diagnostics have them
    if task.benchmark == "glue":
        return _read_tsv(task, path, labelled)
    return _read_jsonl(task, path, labelled)


def parse_label(task: Task, raw: Any, *, file: Path | None = None, line: int | None = None) -> int | float:
    """A raw label (name, id, JSON boolean, "true"/"false", score) -> the Hub's label id.

    parse_label(get_task("superglue", "boolq"), "true")
    # -> 1
    """
    if task.kind == "regression":
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = float("nan")
        if not 0.0 <= value <= 5.0:
            raise UserError(f"expected a similarity score between 0 and 5, got {raw!r}", file=file,
                            line=line, field="label", fix="fix or remove the row")
        return value
    labels = task.labels or ()
    if isinstance(raw, bool) and labels == ("False", "True"):
        return int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < len(labels):
        return raw
    if isinstance(raw, str):
        text = raw.strip()
        lowered = [name.lower() for name in labels]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        if labels == ("False", "True") and text.lower() in _TRUE | _FALSE:
            return int(text.lower() in _TRUE)
        if text.isdigit() and int(text) < len(labels):
            return int(text)
    raise UserError(f"invalid {task.title} label {raw!r}", file=file, line=line, field="label",
                    fix=f"expected one of {', '.join(labels)} (or their ids 0-{len(labels) - 1})")


def _read_tsv(task: Task, path: Path, labelled: bool) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        lines = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header_line = 0
    wanted = dict(task.tsv_columns)
    if not task.tsv_header and lines and lines[0] == ["index", "sentence"]:  # CoLA test.tsv has a header
        wanted = {"sentence": "sentence", "label": "label"}
    if task.tsv_header or wanted.get("sentence") == "sentence":
        if not lines:
            raise UserError("empty file (expected a header row)", file=path, line=1)
        header, lines, header_line = lines[0], lines[1:], 1
        if not labelled and wanted["label"] not in header:
            del wanted["label"]
        columns: dict[str, int] = {}
        for key, col in wanted.items():
            if col not in header:
                raise UserError(f'missing column "{col}" (found: {", ".join(header)})', file=path, line=1,
                                field=key, fix="use the official GLUE file for this task")
            columns[key] = header.index(col)
        index_col = header.index("index") if "index" in header else None
    else:
        columns = {k: int(v) for k, v in wanted.items()}
        index_col = None
    rows = []
    for n, cells in enumerate(lines):
        line = n + 1 + header_line
        if not cells or cells == [""]:
            continue
        row: dict[str, Any] = {}
        for key, col in columns.items():
            if col >= len(cells):
                raise UserError(f"row has {len(cells)} columns, expected at least {col + 1}", file=path,
                                line=line, field=key, fix="check for a stray tab or a broken line")
            row[key] = cells[col]
        row["label"] = parse_label(task, row["label"], file=path, line=line) if "label" in row else -1
        row["idx"] = int(cells[index_col]) if index_col is not None and cells[index_col].isdigit() else n
        rows.append(row)
    return rows


def _get(record: dict, key: str, path: Path, line: int) -> Any:
    if key not in record:
        raise UserError(f"missing field (found: {', '.join(record)})", file=path, line=line, field=key,
                        fix="use the official SuperGLUE JSONL for this task")
    return record[key]


def _read_jsonl(task: Task, path: Path, labelled: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8-sig") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                raise UserError(f"invalid JSON: {e.msg} (column {e.colno})", file=path, line=line) from None
            if not isinstance(record, dict):
                raise UserError("each line must be a JSON object", file=path, line=line)
            rows += _convert(task, record, path, line, labelled, len(rows))
    return rows


def _convert(task: Task, rec: dict, path: Path, line: int, labelled: bool, n: int) -> list[dict[str, Any]]:
    def label(raw_record: dict) -> int | float:
        if not labelled and "label" not in raw_record:
            return -1
        return parse_label(task, _get(raw_record, "label", path, line), file=path, line=line)

    if task.name == "multirc":
        passage = _get(rec, "passage", path, line)
        out = []
        for q in _get(passage, "questions", path, line):
            for a in _get(q, "answers", path, line):
                out.append({"paragraph": passage["text"], "question": q["question"], "answer": a["text"],
                            "idx": {"paragraph": rec.get("idx", line - 1), "question": q["idx"],
                                    "answer": a["idx"]},
                            "label": label(a)})
        return out
    if task.name == "record":
        passage = _get(rec, "passage", path, line)
        text = _get(passage, "text", path, line)
        entities = list(dict.fromkeys(text[e["start"]:e["end"] + 1] for e in passage.get("entities", [])))
        return [{"passage": text, "query": qa["query"], "entities": entities,
                 "answers": list(dict.fromkeys(a["text"] for a in qa.get("answers", []))),
                 "idx": {"passage": rec.get("idx", line - 1), "query": qa["idx"]}, "label": -1}
                for qa in _get(rec, "qas", path, line)]
    if task.name == "wsc":
        target = _get(rec, "target", path, line)
        flat = {"text": _get(rec, "text", path, line), **{k: _get(target, k, path, line) for k in
                ("span1_index", "span2_index", "span1_text", "span2_text")}}
    else:
        extra = ("start1", "start2", "end1", "end2") if task.name == "wic" else ()
        flat = {k: _get(rec, k, path, line) for k in task.inputs + extra}
    flat["idx"] = rec.get("idx", n)
    flat["label"] = label(rec)
    return [flat]


def _load_hub(task: Task, split: str) -> list[dict[str, Any]]:
    import datasets

    config = _HUB_CONFIG.get(task.hub_config, task.hub_config)
    hub_split = split
    if task.name.startswith("mnli") and split == "train":
        config = "mnli"
    if task.name in ("ax", "axb", "axg"):
        hub_split = "test"
    repo = HUB_REPOS[task.benchmark]
    try:
        ds = datasets.load_dataset(repo, config, split=hub_split)
    except Exception as e:  # network, offline mode, missing split: all user-fixable
        raise UserError(f"could not load {repo} [{config}] split {hub_split} from the Hub: "
                        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                        field="data.source",
                        fix="go online (unset HF_HUB_OFFLINE) or use --data.source local --data.dir DIR") from None
    return [dict(r) for r in ds]


def subsample(rows: list[dict], n: int | None, seed: int, task: Task | None = None) -> list[dict]:
    """About `n` rows drawn with `seed`, in their original order (all rows when n is None or
    too big). MultiRC keeps whole questions and AX-g whole minimal pairs, so their metrics
    stay defined (the count is rounded up to a whole group).

    >>> len(subsample([{"idx": i} for i in range(10)], 3, seed=0))
    3
    """
    if n is None or n >= len(rows):
        return rows
    groups: dict[Any, list[int]] = {}
    for i, r in enumerate(rows):
        if task is not None and task.name == "multirc":
            key: Any = (r["idx"]["paragraph"], r["idx"]["question"])
        elif task is not None and task.name == "axg":
            key = i // 2
        else:
            key = i
        groups.setdefault(key, []).append(i)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    picked: list[int] = []
    for k in keys:
        if len(picked) >= n:
            break
        picked += groups[k]
    return [rows[i] for i in sorted(picked)]
