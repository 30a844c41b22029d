"""Stream rows out of files, folders, `save_to_disk` folders and Hub datasets.

Every row comes with where it came from (file and 1-based line, or row number for
Parquet/Arrow/JSON arrays), so each problem can be reported as `file:line`. A line that
cannot be parsed is yielded as a `RawRow` with `error` set, never skipped.

Example:
    for raw in read_rows("train.jsonl"):
        print(raw.source, raw.line, raw.data)
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..core.errors import UserError

JSONL = (".jsonl", ".ndjson")
TABLES = {".csv": ",", ".tsv": "\t"}
TEXT = (".txt", ".text", ".md")
SUPPORTED = (*JSONL, ".json", *TABLES, ".parquet", *TEXT)
DATASETS_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


@dataclass
class RawRow:
    """One row as read: `data` is the parsed record, or None with `error` saying why not.
    `plain_text`: the row is a piece of a plain-text file (`{"text": ...}`, no fields of its own)."""

    source: str
    line: int
    data: dict[str, Any] | None
    error: str | None = None
    plain_text: bool = False


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _open_binary(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")


def _not_utf8(path: Path | str, line: int, e: UnicodeDecodeError) -> UserError:
    return UserError(f"not UTF-8 text (byte {e.start} of this line)", file=path, line=line,
                     fix="re-encode the file as UTF-8, e.g. iconv -t utf-8")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line with its newline), decoded as UTF-8 one line at a time, so a
    bad byte is reported with its line."""
    with _open_binary(path) as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _not_utf8(path, number, e) from None
            yield number, (line.removeprefix("\ufeff") if number == 1 else line)


def _read_jsonl(path: Path, name: str) -> Iterator[RawRow]:
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            data = json.loads(line.rstrip("\r\n"))
        except json.JSONDecodeError as e:
            yield RawRow(name, number, None, f"line is not valid JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(data, dict):
            yield RawRow(name, number, None, f"expected a JSON object, got {type(data).__name__}")
            continue
        yield RawRow(name, number, data)


def _read_json(path: Path, name: str) -> Iterator[RawRow]:
    with _open_binary(path) as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"["):
        yield from _read_jsonl(path, name)   # a .json file holding JSON lines
        return
    with _open_binary(path) as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _not_utf8(name, raw[:e.start].count(b"\n") + 1, e) from None
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"not valid JSON ({e.msg})", file=name, line=e.lineno,
                        fix="a .json file holds one array of objects, or one object per line") from None
    for number, data in enumerate(items, start=1):
        if isinstance(data, dict):
            yield RawRow(name, number, data)
        else:
            yield RawRow(name, number, None, f"array item {number} is a {type(data).__name__}, expected an object")


def _read_table(path: Path, name: str, delimiter: str, header: bool) -> Iterator[RawRow]:
    csv.field_size_limit(sys.maxsize)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader((line for _, line in _lines(path)), delimiter=delimiter, quoting=quoting)
    names: list[str] | None = None
    end = 0
    for fields in reader:
        start, end = end + 1, reader.line_num
        if not fields:
            continue
        if names is None:
            if header:
                names = [n.strip() for n in fields]
                continue
            names = [str(i) for i in range(len(fields))]
        if len(fields) != len(names):
            yield RawRow(name, start, None, f"row has {len(fields)} fields, the header has {len(names)} "
                         f"({', '.join(names)})")
            continue
        yield RawRow(name, start, dict(zip(names, fields)))


def _read_parquet(path: Path, name: str) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for data in batch.to_pylist():
            number += 1
            yield RawRow(name, number, data)


def _read_text(path: Path, name: str, unit: str) -> Iterator[RawRow]:
    if unit == "file":
        yield RawRow(name, 1, {"text": "".join(line for _, line in _lines(path))}, plain_text=True)
        return
    if unit == "line":
        for number, line in _lines(path):
            if line.strip():
                yield RawRow(name, number, {"text": line.rstrip("\r\n")}, plain_text=True)
        return
    buf: list[str] = []
    start = 0
    for number, line in _lines(path):
        if line.strip():
            if not buf:
                start = number
            buf.append(line)
        elif buf:
            yield RawRow(name, start, {"text": "".join(buf).rstrip("\r\n")}, plain_text=True)
            buf = []
    if buf:
        yield RawRow(name, start, {"text": "".join(buf).rstrip("\r\n")}, plain_text=True)


def _read_file(path: Path, unit: str, header: bool) -> Iterator[RawRow]:
    name, ext = str(path), _suffix(path)
    if ext in JSONL:
        yield from _read_jsonl(path, name)
    elif ext == ".json":
        yield from _read_json(path, name)
    elif ext in TABLES:
        yield from _read_table(path, name, TABLES[ext], header)
    elif ext == ".parquet":
        yield from _read_parquet(path, name)
    elif ext in TEXT:
        yield from _read_text(path, name, unit)
    else:
        raise UserError(f'unsupported file type "{ext or path.name}"', file=path,
                        fix=f"use one of {', '.join(SUPPORTED)} (optionally .gz)")


def _read_saved(path: Path, split: str) -> Iterator[RawRow]:
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(str(path))
    if isinstance(ds, DatasetDict):
        if split not in ds:
            raise UserError(f'split "{split}" not in this DatasetDict', file=path, field="split",
                            fix=f"choose one of {', '.join(ds)}")
        ds = ds[split]
    name = f"{path}[{split}]" if (path / "dataset_dict.json").exists() else str(path)
    for number, data in enumerate(ds, start=1):
        yield RawRow(name, number, data)


def _read_hub(dataset_id: str, split: str) -> Iterator[RawRow]:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        raise UserError("no such file or folder, and the Hub is offline (HF_HUB_OFFLINE=1)", file=dataset_id,
                        fix="check the path, or unset HF_HUB_OFFLINE to read a Hub dataset id")
    from datasets import load_dataset

    ds = load_dataset(dataset_id, split=split, streaming=True)
    for number, data in enumerate(ds, start=1):
        yield RawRow(f"{dataset_id}[{split}]", number, data)


def text_of(row: RawRow, text_field: str = "text") -> Any:
    """The value of the configured text field of a (readable) row. A plain-text file's rows have no
    fields of their own and give their text whatever `text_field` is; any other row without the
    field is a UserError naming the file and line, the missing field and the fields the row has
    (never a silent fall back to `text`).

    Example:
        >>> text_of(RawRow("a.jsonl", 1, {"body": "hi"}), "body")
        'hi'
        >>> text_of(RawRow("a.jsonl", 1, {"text": "hi"}), "body")
        Traceback (most recent call last):
        ...
        tunesmith.core.errors.UserError: a.jsonl:1: field "body" is missing; this row has the fields: text (set data.text_field to the field that holds the text, e.g. --data.text_field text)
    """
    if row.plain_text:
        return row.data["text"]
    if text_field not in row.data:
        names = [str(k) for k in row.data]
        have = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "") if names else "none"
        strings = [k for k in names if isinstance(row.data[k], str)]
        example = f", e.g. --data.text_field {strings[0]}" if strings else ""
        raise UserError(f"is missing; this row has the fields: {have}", file=row.source, line=row.line,
                        field=text_field, fix=f"set data.text_field to the field that holds the text{example}")
    return row.data[text_field]


def list_files(folder: Path) -> list[Path]:
    """Supported data files under `folder`, recursively, in sorted order."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and _suffix(p) in SUPPORTED)
    if not files:
        raise UserError("folder holds no data files", file=folder,
                        fix=f"put {', '.join(SUPPORTED)} files in it, or point at a save_to_disk folder")
    return files


def read_rows(path: str | os.PathLike, *, split: str = "train", text_unit: str = "paragraph",
              header: bool = True) -> Iterator[RawRow]:
    """Stream every row of a file, folder, `save_to_disk` folder or Hub dataset id.

    Example:
        rows = list(read_rows("data/train.jsonl"))
        rows[0].source, rows[0].line
        # -> ('data/train.jsonl', 1)
    """
    p = Path(path)
    if p.is_file():
        yield from _read_file(p, text_unit, header)
    elif p.is_dir():
        if any((p / m).exists() for m in DATASETS_MARKERS):
            yield from _read_saved(p, split)
        else:
            for f in list_files(p):
                yield from _read_file(f, text_unit, header)
    elif "/" in str(path) and not str(path).startswith((".", "/")) and str(path).count("/") == 1:
        yield from _read_hub(str(path), split)
    else:
        raise UserError("no such file or folder", file=path, fix="check the path")
