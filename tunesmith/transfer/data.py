"""Labelled text for task fine-tuning: a local csv/tsv/jsonl file (or a `datasets.Dataset`)
with a text column, an optional text_pair column and a label column, validated row by row.
"""
from __future__ import annotations

import csv
import difflib
import math
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, load_dataset

from ..core.errors import UserError

FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json"}


@dataclass
class Columns:
    text: str
    text_pair: str | None
    label: str


def read_table(path: str | Path) -> Dataset:
    """A csv, tsv (no quoting, as GLUE writes it) or jsonl file as a Dataset."""
    path = Path(path)
    if not path.is_file():
        raise UserError("data file not found", file=path, fix="check data.train / data.eval")
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise UserError(f'unsupported data format "{path.suffix}"', file=path,
                        fix="use .csv, .tsv or .jsonl")
    kwargs = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if path.suffix.lower() == ".tsv" else {}
    try:
        return load_dataset(kind, data_files=str(path), split="train", **kwargs)
    except Exception as e:  # datasets raises many types for malformed files
        raise UserError(f"cannot parse the file: {str(e).splitlines()[0][:200]}", file=path) from None


def _row_line(path: str, index: int) -> int:
    """1-based file line of data row `index` (csv/tsv have a header line; jsonl has none)."""
    return index + (1 if path.endswith(".jsonl") or path.endswith(".json") else 2)


def check_columns(data: Dataset, cols: Columns, source: str) -> None:
    for field, name in (("data.text", cols.text), ("data.text_pair", cols.text_pair),
                        ("data.label", cols.label)):
        if name is not None and name not in data.column_names:
            close = difflib.get_close_matches(name, data.column_names, n=1)
            hint = f'did you mean "{close[0]}"?' if close else f"columns: {', '.join(data.column_names)}"
            raise UserError(f'column "{name}" not found', file=source, field=field, fix=hint)


def check_rows(data: Dataset, cols: Columns, source: str, regression: bool) -> None:
    """Every row has non-empty text and a label (numeric for regression): else a UserError
    naming the file line."""
    for i, row in enumerate(data):
        for name in filter(None, (cols.text, cols.text_pair)):
            if not isinstance(row[name], str) or not row[name].strip():
                raise UserError(f'empty or missing text in column "{name}"', file=source,
                                line=_row_line(source, i), fix="fill it in or drop the row")
        label = row[cols.label]
        if label is None or (isinstance(label, float) and math.isnan(label)) or label == "":
            raise UserError(f'missing label in column "{cols.label}"', file=source,
                            line=_row_line(source, i), fix="label every row")
        if regression:
            try:
                float(label)
            except (TypeError, ValueError):
                raise UserError(f"label {label!r} is not a number (regression task)", file=source,
                                line=_row_line(source, i), fix="use numeric labels, or task "
                                "classification") from None


def label_names(train: Dataset, cols: Columns) -> list:
    """Sorted distinct labels of the training set (ints sort numerically)."""
    return sorted(set(train[cols.label]), key=lambda v: (isinstance(v, str), v))


def encode_labels(data: Dataset, cols: Columns, names: list | None, source: str) -> list:
    """Label ids (classification, in `names` order) or floats (regression, `names` None)."""
    values = data[cols.label]
    if names is None:
        return [float(v) for v in values]
    index = {v: i for i, v in enumerate(names)}
    for i, v in enumerate(values):
        if v not in index:
            raise UserError(f"label {v!r} does not occur in the training data", file=source,
                            line=_row_line(source, i), fix=f"labels seen in training: {names}")
    return [index[v] for v in values]
