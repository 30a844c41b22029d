"""Pretraining documents: the text field of every row that `tunesmith.data.readers` reads
(text files, folders, JSONL/JSON/CSV/Parquet, `save_to_disk` folders, Hub ids), streamed so
memory stays bounded for corpora larger than memory."""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Iterator

from ..core.errors import UserError
from ..data.readers import read_rows, text_of


def embedded_corpus() -> Path:
    """The corpus shipped inside tunesmith (generated text, free to ship)."""
    return Path(str(resources.files("tunesmith.pretraining.corpus") / "tinytales.txt"))


def corpus_specs(train: list[str] | str | None) -> list[str]:
    specs = [str(embedded_corpus())] if train is None else ([train] if isinstance(train, str) else list(train))
    if not specs:
        raise UserError("no training data given", field="data.train", fix="name a file, folder or dataset")
    return specs


def iter_documents(specs: list[str], text_field: str = "text", split_text: str = "paragraph") -> Iterator[str]:
    """Yield the non-blank documents of every source in order; a row without a string in
    `text_field` is an error naming its file and line."""
    for spec in specs:
        for row in read_rows(spec, text_unit=split_text):
            if row.error:
                raise UserError(row.error, file=row.source, line=row.line)
            text = text_of(row, text_field)     # .txt rows give their text; others must have the field
            if text is None:
                continue
            if not isinstance(text, str):
                raise UserError(f"must be a string, got {type(text).__name__}", file=row.source, line=row.line,
                                field=text_field)
            if text.strip():
                yield text
