"""Check every row before training: fields, types, roles, labels, lengths.

`checked_rows` streams one input and yields each row converted to its internal form, or
the `Problem` that stops it. `check_data` runs it over whole inputs and returns a
`CheckResult` (what `tunesmith data check` prints).

Example:
    result = check_data("train.jsonl", tokenizer="path/to/tok", max_length=1024)
    print(result.render())
"""
from __future__ import annotations

import itertools
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ..core.config import coerce
from ..core.errors import UserError
from .chat import load_tokenizer, token_length
from .config import DataPrepConfig, InputConfig
from .formats import (FORMAT_FIELDS, FORMAT_KIND, RowProblem, check_roles, common_kind, conversation_of, convert,
                      detect_format, map_columns, message_text)
from .readers import RawRow, read_rows


@dataclass
class Problem:
    """One bad row: where, which field, what is wrong, how to fix it."""

    source: str
    line: int | None
    field: str | None
    message: str
    fix: str | None = None

    def error(self) -> UserError:
        return UserError(self.message, file=self.source, line=self.line, field=self.field, fix=self.fix)

    def __str__(self) -> str:
        return str(self.error())

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.source, "line": self.line, "field": self.field, "message": self.message,
                "fix": self.fix, "text": str(self)}


@dataclass
class Checked:
    """A row after conversion and checks: `row` (internal form) or `problem`, and its length."""

    raw: RawRow
    row: dict[str, Any] | None
    problem: Problem | None
    length: int = 0


def char_length(row: dict[str, Any]) -> int:
    convs = conversation_of(row)
    if convs:
        return max(sum(len(message_text(m)) for m in c) for c in convs)
    return len(row.get("text", "")) + len(row.get("text_pair", ""))


class LabelCheck:
    """Labels in the configured set, or, without one, all of one type (names or numbers)."""

    def __init__(self, labels: list | None):
        self.allowed = {str(l) for l in labels} if labels is not None else None
        self.kind: type | None = None

    def __call__(self, label: Any) -> None:
        if self.allowed is not None:
            if str(label) not in self.allowed:
                raise RowProblem("label", f"{label!r} is not in the label set",
                                 f"allowed: {', '.join(sorted(self.allowed))}")
            return
        kind = str if isinstance(label, str) else float
        if self.kind is None:
            self.kind = kind
        elif kind is not self.kind:
            raise RowProblem("label", f"{label!r} is a {'name' if kind is str else 'number'} but earlier "
                             f"labels are {'names' if self.kind is str else 'numbers'}",
                             "use one kind of label, or set check.labels")


def resolve_format(first: RawRow | None, fmt: str, columns: dict[str, str], source: str) -> str:
    """The forced format, or the one detected from the first readable row."""
    if fmt != "auto":
        return fmt
    if first is None:
        raise UserError("no rows to read", file=source, fix="check the file is not empty")
    found = detect_format(map_columns(first.data or {}, columns))
    if found is None:
        keys = ", ".join(sorted(first.data or {})) or "none"
        raise UserError(f"cannot tell the data format from the fields ({keys})", file=first.source,
                        line=first.line, field="format",
                        fix="map columns (columns: {question: instruction, answer: output}) or set format; "
                        + "; ".join(f"{k}: {v}" for k, v in FORMAT_FIELDS.items()))
    return found


def checked_rows(inp: InputConfig, cfg: DataPrepConfig, tokenizer: Any = None,
                 labels: LabelCheck | None = None, formats: dict[str, str] | None = None) -> Iterator[Checked]:
    """Stream one input: read, map columns, convert, check roles/labels/template, measure length.
    The format used is stored in `formats[inp.path]`."""
    columns = inp.columns if inp.columns is not None else cfg.columns
    rows = read_rows(inp.path, split=inp.split, text_unit=inp.text_unit, header=inp.header)
    head = list(itertools.islice(rows, 1))
    while head and head[0].data is None:          # unreadable leading lines: report them, keep looking
        yield Checked(head[0], None, Problem(head[0].source, head[0].line, None, head[0].error or ""))
        head = list(itertools.islice(rows, 1))
    fmt = resolve_format(head[0] if head else None, inp.format or cfg.format, columns, inp.path)
    if formats is not None:
        formats[inp.path] = fmt
    reverse = {dst: src for src, dst in columns.items()}
    labels = labels or LabelCheck(cfg.check.labels)
    for raw in itertools.chain(head, rows):
        if raw.data is None:
            yield Checked(raw, None, Problem(raw.source, raw.line, None, raw.error or "unreadable row"))
            continue
        try:
            row = convert(map_columns(raw.data, columns), fmt)
            for conv in conversation_of(row):
                check_roles(conv, "messages" if "messages" in row else "prompt", alternate=cfg.check.alternate_roles)
            if "label" in row and "text" in row:
                labels(row["label"])
            length = token_length(row, tokenizer) if tokenizer is not None else char_length(row)
        except RowProblem as p:
            name = p.field
            message = p.message
            if name in reverse:
                message, name = f"{message} (mapped to {name})", reverse[name]
            yield Checked(raw, None, Problem(raw.source, raw.line, name, message, p.fix))
            continue
        yield Checked(raw, row, None, length)


@dataclass
class LengthStats:
    """Length distribution and how many rows exceed `max_length`."""

    unit: str
    lengths: array = field(default_factory=lambda: array("l"))
    max_length: int | None = None

    def add(self, n: int) -> None:
        self.lengths.append(n)

    def summary(self) -> dict[str, Any]:
        if not self.lengths:
            return {"unit": self.unit, "rows": 0}
        a = np.frombuffer(self.lengths, dtype=np.int64) if self.lengths.itemsize == 8 else np.array(self.lengths)
        out: dict[str, Any] = {"unit": self.unit, "rows": int(a.size), "mean": round(float(a.mean()), 1),
                               **{f"p{q}": int(np.percentile(a, q)) for q in (50, 90, 95, 99)},
                               "max": int(a.max())}
        if self.max_length is not None:
            over = a[a > self.max_length] - self.max_length
            out.update(max_length=self.max_length, too_long=int(over.size),
                       too_long_fraction=round(over.size / a.size, 4),
                       excess_mean=round(float(over.mean()), 1) if over.size else 0,
                       excess_max=int(over.max()) if over.size else 0)
        return out

    def histogram(self, bins: int = 10) -> list[tuple[int, int, int]]:
        """(low, high, count) bins over the lengths."""
        if not self.lengths:
            return []
        counts, edges = np.histogram(np.array(self.lengths), bins=bins)
        return [(int(edges[i]), int(edges[i + 1]), int(c)) for i, c in enumerate(counts)]


@dataclass
class CheckResult:
    """What `tunesmith data check` reports. `ok` is False when any row has a problem."""

    formats: dict[str, str]
    rows: int
    good_rows: int
    problems: list[Problem]
    problem_count: int
    lengths: LengthStats
    labels: dict[str, int]

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def summary(self) -> dict[str, Any]:
        """Table-friendly numbers (JSON-serialisable)."""
        return {"formats": self.formats, "kinds": sorted({FORMAT_KIND[f] for f in self.formats.values()}),
                "rows": self.rows, "good_rows": self.good_rows, "bad_rows": self.problem_count,
                "lengths": self.lengths.summary(), "labels": self.labels}

    def render(self) -> str:
        """Plain text for the terminal: formats, counts, length percentiles, then every problem."""
        s = self.summary()
        out = [f"{src}: format {fmt} ({FORMAT_KIND[fmt]})" for src, fmt in self.formats.items()]
        out.append(f"rows: {self.rows}  good: {self.good_rows}  bad: {self.problem_count}")
        ls = s["lengths"]
        if ls.get("rows"):
            out.append(f"length ({ls['unit']}): mean {ls['mean']}  p50 {ls['p50']}  p90 {ls['p90']}  "
                       f"p95 {ls['p95']}  p99 {ls['p99']}  max {ls['max']}")
            if "max_length" in ls:
                out.append(f"longer than max_length {ls['max_length']}: {ls['too_long']} rows "
                           f"({100 * ls['too_long_fraction']:.2f}%), would lose {ls['excess_mean']} tokens "
                           f"on average, {ls['excess_max']} at most")
        if self.labels:
            out.append("labels: " + ", ".join(f"{k}: {v}" for k, v in sorted(self.labels.items())))
        out += [str(p) for p in self.problems]
        if self.problem_count > len(self.problems):
            out.append(f"... and {self.problem_count - len(self.problems)} more problems")
        return "\n".join(out)


def check_data(config: DataPrepConfig | dict | str | list[str] | None = None, *, format: str | None = None,
               tokenizer: str | Any | None = None, max_length: int | None = None,
               columns: dict[str, str] | None = None, labels: list | None = None) -> CheckResult:
    """Check every row of the inputs; never raises for bad rows (they are in `.problems`).

    `config` is a DataPrepConfig, a dict for one, or simply a path or list of paths.

    Example:
        r = check_data("train.jsonl", format="alpaca")
        r.ok, r.rows, r.formats
        # -> (True, 52002, {'train.jsonl': 'alpaca'})
    """
    if isinstance(config, (str, list)):
        paths = [config] if isinstance(config, str) else config
        config = {"inputs": [{"path": str(p)} for p in paths]}
    cfg = coerce(DataPrepConfig, config)
    check = {k: v for k, v in {"tokenizer": tokenizer if isinstance(tokenizer, str) else None,
                               "max_length": max_length, "labels": labels}.items() if v is not None}
    top = {k: v for k, v in {"format": format, "columns": columns}.items() if v is not None}
    if check or top:
        cfg = coerce(DataPrepConfig, cfg.model_dump(), check=cfg.check.model_copy(update=check), **top)
    if not cfg.inputs:
        raise UserError("no inputs to check", field="inputs", fix="give at least one path")
    tok = tokenizer if tokenizer is not None and not isinstance(tokenizer, str) else (
        load_tokenizer(cfg.check.tokenizer) if cfg.check.tokenizer else None)
    if cfg.check.max_length is not None and tok is None:
        raise UserError("max_length is counted in tokens and needs a tokenizer", field="check.max_length",
                        fix="pass --tokenizer PATH")
    return run_checks(cfg, tok)


def run_checks(cfg: DataPrepConfig, tokenizer: Any = None) -> CheckResult:
    """`check_data` on a resolved config and an already loaded tokenizer."""
    formats: dict[str, str] = {}
    stats = LengthStats("tokens" if tokenizer is not None else "characters", max_length=cfg.check.max_length)
    labels: Counter = Counter()
    label_check = LabelCheck(cfg.check.labels)
    problems: list[Problem] = []
    rows = good = bad = 0
    for inp in cfg.inputs:
        for c in checked_rows(inp, cfg, tokenizer, label_check, formats):
            rows += 1
            if c.problem is not None:
                bad += 1
                if len(problems) < cfg.check.max_problems:
                    problems.append(c.problem)
                continue
            good += 1
            stats.add(c.length)
            if "label" in c.row:
                labels[str(c.row["label"])] += 1
    try:
        common_kind(formats)
    except UserError as e:
        problems.insert(0, Problem(cfg.inputs[-1].path, None, "format", str(e)))
        bad += 1
    return CheckResult(formats, rows, good, problems, bad, stats, dict(labels))
