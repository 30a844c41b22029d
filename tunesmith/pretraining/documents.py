"""Reading pretraining documents from text files, folders, JSONL/JSON/Parquet, `save_to_disk`
folders or Hub ids, as a stream (memory stays bounded for corpora larger than memory)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

from ..core.errors import UserError

TEXT_SUFFIXES = {".txt", ".md", ".text"}
JSON_SUFFIXES = {".jsonl", ".json"}
SUFFIXES = TEXT_SUFFIXES | JSON_SUFFIXES | {".parquet"}


def embedded_corpus() -> Path:
    """The corpus shipped inside tunesmith (generated text, free to ship)."""
    return Path(str(resources.files("tunesmith.pretraining.corpus") / "tinytales.txt"))


@dataclass(frozen=True)
class Source:
    """One input: a local file, a `save_to_disk` folder, or a Hub dataset id."""

    kind: str  # "text" | "jsonl" | "json" | "parquet" | "disk" | "hub"
    location: str


def resolve_sources(train: list[str] | str | None) -> list[Source]:
    specs = [str(embedded_corpus())] if train is None else ([train] if isinstance(train, str) else list(train))
    if not specs:
        raise UserError("no training data given", field="data.train", fix="name a file, folder or dataset")
    out: list[Source] = []
    for spec in specs:
        p = Path(spec).expanduser()
        if p.is_dir():
            if (p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists() or (p / "state.json").exists():
                out.append(Source("disk", str(p)))
                continue
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
            if not files:
                raise UserError(f"folder holds no {'/'.join(sorted(SUFFIXES))} files", file=p, field="data.train")
            out += [_file_source(f) for f in files]
        elif p.is_file():
            out.append(_file_source(p))
        elif _looks_like_hub_id(spec) and os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True"):
            out.append(Source("hub", spec))
        else:
            raise UserError("training data not found", file=spec, field="data.train",
                            fix="check the path (Hub dataset ids need network and HF_HUB_OFFLINE unset)")
    return out


def _looks_like_hub_id(spec: str) -> bool:
    return spec.count("/") <= 1 and not spec.startswith((".", "/", "~")) and not Path(spec).suffix


def _file_source(p: Path) -> Source:
    suffix = p.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return Source("text", str(p))
    if suffix in JSON_SUFFIXES or suffix == ".parquet":
        return Source(suffix[1:], str(p))
    raise UserError(f'unsupported file type "{suffix}"', file=p, field="data.train",
                    fix=f"use one of {', '.join(sorted(SUFFIXES))}")


def iter_documents(sources: list[Source], text_field: str = "text", split_text: str = "blank_line",
                   streaming: bool = True) -> Iterator[str]:
    """Yield non-empty documents from every source in order."""
    for src in sources:
        if src.kind == "text":
            yield from _text_documents(Path(src.location), split_text)
        elif src.kind == "jsonl":
            yield from _jsonl_documents(Path(src.location), text_field)
        elif src.kind == "json":
            yield from _json_documents(Path(src.location), text_field)
        elif src.kind == "parquet":
            yield from _parquet_documents(Path(src.location), text_field)
        else:
            yield from _datasets_documents(src, text_field, streaming)


def _decode(raw: bytes, path: Path, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"not UTF-8 text (byte {e.start} of this line)", file=path, line=line,
                        fix="re-encode the file as UTF-8, e.g. iconv -t utf-8") from None


def _text_documents(path: Path, split_text: str) -> Iterator[str]:
    """Documents are paragraphs separated by blank lines (or lines, or the whole file)."""
    buf: list[str] = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            line = _decode(raw, path, lineno).rstrip("\r\n")
            if split_text == "line":
                if line.strip():
                    yield line
            elif split_text == "blank_line" and not line.strip():
                if buf:
                    yield "\n".join(buf)
                    buf = []
            else:
                buf.append(line)
    text = "\n".join(buf)
    if text.strip():
        yield text


def _field(row: object, text_field: str, path: Path, line: int | None) -> str | None:
    if not isinstance(row, dict):
        raise UserError(f"expected a JSON object, got {type(row).__name__}", file=path, line=line)
    if text_field not in row:
        keys = ", ".join(list(row)[:8])
        raise UserError(f"is missing (row has: {keys})", file=path, line=line, field=text_field,
                        fix="set data.text_field to the column that holds the text")
    value = row[text_field]
    if value is None:
        return None
    if not isinstance(value, str):
        raise UserError(f"must be a string, got {type(value).__name__}", file=path, line=line, field=text_field)
    return value if value.strip() else None


def _jsonl_documents(path: Path, text_field: str) -> Iterator[str]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            line = _decode(raw, path, lineno)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"invalid JSON: {e.msg} (column {e.colno})", file=path, line=lineno) from None
            text = _field(row, text_field, path, lineno)
            if text is not None:
                yield text


def _json_documents(path: Path, text_field: str) -> Iterator[str]:
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"not UTF-8 text (byte {e.start})", file=path) from None
    except json.JSONDecodeError as e:
        if "Extra data" in e.msg:  # JSON Lines with a .json name
            yield from _jsonl_documents(path, text_field)
            return
        raise UserError(f"invalid JSON: {e.msg}", file=path, line=e.lineno) from None
    rows = data.get("data") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise UserError("expected a list of objects (or {\"data\": [...]})", file=path)
    for i, row in enumerate(rows):
        text = _field(row, text_field, path, None if row is None else i + 1)
        if text is not None:
            yield text


def _parquet_documents(path: Path, text_field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    if text_field not in pf.schema_arrow.names:
        raise UserError(f"column is missing (columns: {', '.join(pf.schema_arrow.names)})", file=path,
                        field=text_field, fix="set data.text_field")
    for batch in pf.iter_batches(columns=[text_field], batch_size=1024):
        for text in batch.column(0).to_pylist():
            if isinstance(text, str) and text.strip():
                yield text


def _datasets_documents(src: Source, text_field: str, streaming: bool) -> Iterator[str]:
    import datasets

    if src.kind == "disk":
        ds = datasets.load_from_disk(src.location)
        if isinstance(ds, datasets.DatasetDict):
            if "train" not in ds:
                raise UserError(f"dataset has no train split (splits: {', '.join(ds)})", file=src.location)
            ds = ds["train"]
    else:
        ds = datasets.load_dataset(src.location, split="train", streaming=streaming)
    names = ds.column_names or []
    if names and text_field not in names:
        raise UserError(f"column is missing (columns: {', '.join(names)})", file=src.location,
                        field=text_field, fix="set data.text_field")
    for row in ds:
        text = row.get(text_field)
        if isinstance(text, str) and text.strip():
            yield text
