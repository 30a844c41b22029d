"""The data preparation stage: read -> check -> clean -> anonymize -> deduplicate -> mix -> split -> write.

`prepare(config)` is what `tunesmith data prepare` and every training recipe's data step
call. Rows stream through the steps into Arrow files (bounded memory, except the dedup
index); nothing is dropped without a record: bad rows (with `on_bad_rows: skip`), filtered
rows and duplicates each get a JSONL report, and the data card counts every step.

Example:
    result = prepare({"inputs": [{"path": "train.jsonl"}], "split": {"validation": 0.1},
                      "output": {"dir": "prepared"}})
    result.dataset["train"].num_rows, result.card["steps"]["duplicates_removed"]
    # -> (9000, 12)
"""
from __future__ import annotations

import atexit
import json
import math
import shutil
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..core.config import coerce
from ..core.errors import UserError
from ..core.rundir import RunDir, check_writable_dir, atomic_dir, atomic_write_json, atomic_write_text
from .card import mixing_line, render_card
from .chat import load_tokenizer, token_length
from .clean import clean_row, map_texts, row_text
from .config import DataPrepConfig, InputConfig
from .dedup import Deduplicator
from .formats import FORMAT_KIND, IDENTICAL_PAIR, as_conversation, common_kind, storage_features, storage_row
from .pii import Anonymizer
from .validate import Checked, LabelCheck, LengthStats, char_length, checked_rows

REPORTS = ("skipped_rows.jsonl", "filtered_rows.jsonl", "duplicates.jsonl")
SOURCE_COLUMN = "__tunesmith_source"   # the input a row came from, only while weighted mixing counts rows


@dataclass
class PrepareResult:
    """The prepared splits, the data card (a dict) and where things were written."""

    dataset: Any
    card: dict[str, Any]
    output: Path | None = None
    reports: dict[str, Path] = field(default_factory=dict)

    def render(self) -> str:
        """Lines for the terminal: formats, counts per step, split sizes, report files."""
        s = self.card["steps"]
        lines = [f"{src}: format {fmt} ({FORMAT_KIND[fmt]})" for src, fmt in self.card["formats"].items()]
        lines.append(f"read {s['rows_read']} rows; bad rows skipped {s['bad_rows_skipped']}; filtered "
                     f"{s['filtered']}; duplicates removed {s['duplicates_removed']} (exact {s['exact_duplicates']}, "
                     f"near {s['near_duplicates']}); PII replaced {sum(s['pii_replaced'].values())}")
        if self.card.get("mixing"):
            lines.append(mixing_line(self.card["sources"], self.card["mixing"]).rstrip("."))
        lines.append("splits: " + ", ".join(f"{k} {v}" for k, v in self.card["splits"].items()))
        for name, path in self.reports.items():
            lines.append(f"{name}: {path}")
        if self.output:
            lines.append(f"written to {self.output}")
        return "\n".join(lines)


class _Reports:
    """JSONL reports streamed to a scratch folder, moved into place at the end."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files = {name: None for name in REPORTS}
        self.counts: Counter = Counter()

    def add(self, name: str, record: dict) -> None:
        if self.files[name] is None:
            self.files[name] = open(self.folder / name, "w", encoding="utf-8")
        self.files[name].write(json.dumps(record, ensure_ascii=False) + "\n")
        self.counts[name] += 1

    def close(self) -> list[Path]:
        for f in self.files.values():
            if f is not None:
                f.close()
        return [self.folder / n for n, f in self.files.items() if f is not None]


@dataclass
class _Steps:
    rows_read: int = 0
    bad_rows_skipped: int = 0
    filtered: int = 0
    filter_reasons: Counter = field(default_factory=Counter)
    exact_duplicates: int = 0
    near_duplicates: int = 0
    pii_replaced: Counter = field(default_factory=Counter)
    rows_kept: int = 0


def _input_rows(inp: InputConfig, cfg: DataPrepConfig, formats: dict[str, str], labels: LabelCheck,
                dedup: Deduplicator | None, anonymizer: Anonymizer | None, steps: _Steps,
                reports: _Reports) -> Iterator[dict[str, Any]]:
    rows = checked_rows(inp, cfg, None, labels, formats)
    read = 0
    for c in rows:
        steps.rows_read += 1
        read += 1
        where = f"{c.raw.source}:{c.raw.line}"
        if c.problem is not None:
            if cfg.on_bad_rows == "error":
                p = c.problem
                message = p.message
                if message.startswith(IDENTICAL_PAIR):      # say how many: one pair or the whole file?
                    same, total = _count_identical(rows, read)
                    message += f"; {same} of the {total} rows of this file have identical chosen and rejected"
                raise UserError(message, file=p.source, line=p.line, field=p.field,
                                fix=(f"{p.fix}; " if p.fix else "") + "or set on_bad_rows: skip to skip bad rows")
            steps.bad_rows_skipped += 1
            reports.add("skipped_rows.jsonl", c.problem.to_dict())
            continue
        row, reason = clean_row(c.row, cfg.clean)
        if reason is not None:
            steps.filtered += 1
            steps.filter_reasons[reason.split(":")[0]] += 1
            reports.add("filtered_rows.jsonl", {"row": where, "reason": reason})
            continue
        if anonymizer is not None:
            found: Counter = Counter()

            def scrub(text: str) -> str:
                new, counts = anonymizer.anonymize(text)
                found.update(counts)
                return new

            row = map_texts(row, scrub)
            steps.pii_replaced.update(found)
        if dedup is not None:
            dup = dedup.check(row_text(row), where)
            if dup is not None:
                if dup.kind == "exact":
                    steps.exact_duplicates += 1
                else:
                    steps.near_duplicates += 1
                reports.add("duplicates.jsonl", {"removed": where, "kept": dup.kept, "kind": dup.kind,
                                                 "similarity": dup.similarity})
                continue
        steps.rows_kept += 1
        yield row


def _count_identical(rest: Iterator[Checked], read: int) -> tuple[int, int]:
    """(pairs whose chosen is identical to rejected, rows) in one input, counting the first one
    (already read, with `read - 1` rows before it) and reading the rest of the input."""
    same, total = 1, read
    for c in rest:
        total += 1
        same += c.problem is not None and c.problem.message.startswith(IDENTICAL_PAIR)
    return same, total


def _to_dataset(rows: Iterator[dict], cache: Path) -> Any:
    """Stream rows into an Arrow-backed Dataset under `cache` (None when no row is left)."""
    from datasets import Dataset

    first = next(rows, None)
    if first is None:
        return None
    # conversations with tool calls / reasoning: a fixed schema (datasets infers one from the first rows only)
    features = storage_features(first)

    def gen() -> Iterator[dict]:
        yield storage_row(first)
        yield from (storage_row(r) for r in rows)

    try:
        return Dataset.from_generator(gen, features=features, cache_dir=str(cache), fingerprint=uuid.uuid4().hex)
    except Exception as e:          # datasets wraps errors raised inside the generator
        cause = e
        while cause is not None and not isinstance(cause, UserError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        if "empty" in str(e).lower() or "corresponds to no data" in str(e).lower():
            return None
        raise


def _as_conversations(ds: Any) -> Any:
    """Prompt-completion rows as conversations stored as every conversation is (`storage_features`)."""
    features = storage_features({"messages": []})
    extra = [c for c in ds.column_names if c not in ("prompt", "completion")]
    features.update({c: ds.features[c] for c in extra})
    return ds.map(lambda r: storage_row(as_conversation(r)), remove_columns=["prompt", "completion"],
                  features=features)


def _validation_inputs(cfg: DataPrepConfig, parts: list, steps: _Steps, key: str) -> Any:
    """The rows of the inputs with `role: validation`, concatenated (None when there are none). They
    are read, checked, cleaned and deduplicated like the others (listed after the training inputs, a
    validation row that repeats a training row is dropped as a duplicate), never mixed or sampled."""
    from datasets import concatenate_datasets

    roles = [i for i, inp in enumerate(cfg.inputs) if inp.role == "validation"]
    if not roles:
        return None
    if cfg.split.validation:
        raise UserError("both a validation input and a validation split size are given",
                        file=cfg.inputs[roles[0]].path, field=key,
                        fix=f"set {key}: 0 (the input with role: validation is the validation split), or drop its role")
    if len(roles) == len(cfg.inputs):
        raise UserError("every input has role: validation, so there is nothing to train on",
                        file=cfg.inputs[roles[0]].path, field=key.replace("split.validation", "inputs"),
                        fix="give at least one input with role: train (the default)")
    found = [parts[i] for i in roles if parts[i] is not None and parts[i].num_rows]
    if not found:
        raise UserError(f"the validation input has no rows left (read {steps.rows_read} in all)",
                        file=cfg.inputs[roles[0]].path, field=key.replace("split.validation", "inputs"),
                        fix="check the file, or relax clean/dedup settings (a validation row that repeats a "
                            "training row is dropped as a duplicate)")
    return concatenate_datasets(found) if len(found) > 1 else found[0]


def _split(ds: Any, cfg: DataPrepConfig, steps: _Steps, key: str = "split.validation", validation: Any = None) -> Any:
    """Train (and validation) splits; a validation size that would leave no training row is a
    UserError naming `key`, the inputs and the row count (not datasets' ValueError). `validation`:
    the rows of the validation inputs, the validation split as they are."""
    from datasets import DatasetDict

    if validation is not None:
        return DatasetDict({"train": ds.shuffle(seed=cfg.seed) if cfg.split.shuffle else ds,
                            "validation": validation})
    v = cfg.split.validation
    if v == 0:
        return DatasetDict({"train": ds.shuffle(seed=cfg.seed) if cfg.split.shuffle else ds})
    size: float | int = int(v) if v >= 1 else float(v)
    n = ds.num_rows
    n_validation = size if isinstance(size, int) else math.ceil(size * n)   # as datasets counts it
    if n - n_validation < 1:
        files = ", ".join(i.path for i in cfg.inputs)
        rows = f"{n} prepared row{'s' if n != 1 else ''} (of {steps.rows_read} read)"
        what = (f"validation size {size} is not smaller than the {rows}" if isinstance(size, int) else
                f"validation fraction {size} of the {rows} leaves no row to train on")
        raise UserError(what, file=files, field=key,
                        fix=f"add rows, or set {key}: 0 to train without a validation split"
                            + ("" if isinstance(size, float) else " or use a smaller count"))
    parts = ds.train_test_split(test_size=size, shuffle=cfg.split.shuffle, seed=cfg.seed)
    return DatasetDict({"train": parts["train"], "validation": parts["test"]})


def prepare(config: DataPrepConfig | dict | None = None, *, run_dir: RunDir | str | None = None,
            tokenizer: Any = None, **sections: Any) -> PrepareResult:
    """Run the whole preparation; returns the splits as a `datasets.DatasetDict` and the data card.

    With `output.dir` set, writes the splits (save_to_disk folder or JSONL), `data_card.md`,
    `data_card.json` and the row reports there atomically. With `run_dir`, the reports also go
    to the run directory (training stages pass theirs).

    Example:
        prepare(inputs=[{"path": "a.jsonl"}, {"path": "b.jsonl"}], on_bad_rows="skip")
    """
    from datasets import concatenate_datasets, interleave_datasets

    cfg = coerce(DataPrepConfig, config, **sections)
    if not cfg.inputs:
        raise UserError("no inputs to prepare", field="inputs", fix="give at least one input path")
    out_dir = Path(cfg.output.dir) if cfg.output.dir else None
    if out_dir is not None and out_dir.exists() and any(out_dir.iterdir()) and not cfg.output.overwrite:
        raise UserError("output folder exists and is not empty", file=out_dir, field="output.dir",
                        fix="choose another folder or set output.overwrite: true")
    if out_dir is not None:
        check_writable_dir(out_dir, field="output.dir")
    run = RunDir(Path(run_dir)) if isinstance(run_dir, (str, Path)) else run_dir
    tok = tokenizer if tokenizer is not None else (load_tokenizer(cfg.check.tokenizer) if cfg.check.tokenizer else None)

    scratch = Path(tempfile.mkdtemp(prefix="tunesmith-data-"))
    # the returned splits are memory-mapped from here: removed when the process ends, not before
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    reports = _Reports(scratch)
    steps, formats = _Steps(), {}
    labels = LabelCheck(cfg.check.labels)
    dedup = Deduplicator(cfg.dedup) if (cfg.dedup.exact or cfg.dedup.near) else None
    anonymizer = Anonymizer(cfg.pii.types, cfg.pii.phone_regions) if cfg.pii.enabled else None
    parts, weights, sources = [], [], []
    try:
        for inp in cfg.inputs:
            kept_before = steps.rows_kept
            rows = _input_rows(inp, cfg, formats, labels, dedup, anonymizer, steps, reports)
            ds = _to_dataset(rows, scratch / "cache")
            source = {"path": inp.path, "weight": inp.weight, "rows": steps.rows_kept - kept_before,
                      "limit_dropped": 0}
            if ds is not None and inp.limit is not None and inp.limit < ds.num_rows:
                source["limit_dropped"] = ds.num_rows - inp.limit
                ds = ds.shuffle(seed=cfg.seed).select(range(inp.limit))
            parts.append(ds)
            weights.append(inp.weight)
            sources.append(source)
        kind = common_kind(formats)
        if kind == "conversational":   # prompt-completion inputs mixed with conversations become conversations
            parts = [_as_conversations(p) if p is not None and "prompt" in p.column_names else p for p in parts]
        validation = _validation_inputs(cfg, parts, steps, key=("data." if run is not None else "") + "split.validation")
        keep = [i for i, p in enumerate(parts) if p is not None and p.num_rows and cfg.inputs[i].role == "train"]
        if not keep:
            raise UserError(f"no rows left to prepare (read {steps.rows_read}, bad {steps.bad_rows_skipped}, "
                            f"filtered {steps.filtered}, duplicates {steps.exact_duplicates + steps.near_duplicates})",
                            file=cfg.inputs[0].path, fix="see the reports, or relax clean/dedup settings")
        weighted = any(w is not None for w in weights) and len(keep) > 1
        if weighted:
            probs = [weights[i] if weights[i] is not None else 1.0 for i in keep]
            total = sum(probs)
            # each row carries its input's index through the interleaving, to count what each contributed
            tagged = [parts[i].add_column(SOURCE_COLUMN, np.full(parts[i].num_rows, i, dtype=np.int32)) for i in keep]
            ds = interleave_datasets(tagged, probabilities=[p / total for p in probs],
                                     seed=cfg.seed, stopping_strategy=cfg.split.stopping)
            mixed = np.bincount(ds.with_format("numpy")[SOURCE_COLUMN], minlength=len(parts))
            ds = ds.remove_columns(SOURCE_COLUMN)
        else:
            ds = concatenate_datasets([parts[i] for i in keep])
            mixed = [p.num_rows if p is not None and i in keep else 0 for i, p in enumerate(parts)]
        for source, part, n, inp in zip(sources, parts, mixed, cfg.inputs):
            available = part.num_rows if part is not None and inp.role == "train" else 0
            if inp.role == "validation":
                source["role"] = "validation"
            source.update(mixed=int(n), mixing_dropped=max(0, available - int(n)),
                          mixing_repeated=max(0, int(n) - available))
        max_rows_dropped = 0
        if cfg.split.max_rows is not None and cfg.split.max_rows < ds.num_rows:
            max_rows_dropped = ds.num_rows - cfg.split.max_rows
            ds = ds.shuffle(seed=cfg.seed).select(range(cfg.split.max_rows))
        mixing = {"weighted": weighted, "stopping": cfg.split.stopping if weighted else None,
                  "limit_dropped": sum(s["limit_dropped"] for s in sources),
                  "dropped": sum(s["mixing_dropped"] for s in sources),
                  "repeated": sum(s["mixing_repeated"] for s in sources),
                  "max_rows_dropped": max_rows_dropped, "rows": ds.num_rows}
        # a training stage passes its run folder; its data keys sit under `data.`
        splits = _split(ds, cfg, steps, key=("data." if run is not None else "") + "split.validation",
                        validation=validation)
        lengths = LengthStats("tokens" if tok is not None else "characters", max_length=cfg.check.max_length)
        for row in splits["train"]:
            lengths.add(token_length(row, tok) if tok is not None else char_length(row))
        card = _card(cfg, formats, kind, steps, splits, lengths, sources, mixing)
        report_files = reports.close()
        result = PrepareResult(splits, card)
        result.reports = {f.stem: f for f in report_files}       # kept in scratch when written nowhere else
        if run is not None and run.main:
            run.path.mkdir(parents=True, exist_ok=True)
            for f in report_files:
                shutil.copy(f, run.path / f.name)
                result.reports[f.stem] = run.path / f.name
            run.write_json("data_card.json", card)
        if out_dir is not None:
            result.output = out_dir
            result.dataset = _write(splits, card, report_files, out_dir, cfg)
            for f in report_files:
                result.reports[f.stem] = out_dir / f.name
            if cfg.output.format == "datasets":     # the returned splits now live in out_dir
                shutil.rmtree(scratch, ignore_errors=True)
        return result
    except BaseException:
        reports.close()
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _card(cfg: DataPrepConfig, formats: dict[str, str], kind: str, steps: _Steps, splits: Any,
          lengths: LengthStats, sources: list[dict[str, Any]], mixing: dict[str, Any]) -> dict[str, Any]:
    return {
        "inputs": [i.path for i in cfg.inputs], "formats": formats, "kind": kind,
        "sources": sources, "mixing": mixing,
        "columns": list(splits["train"].column_names),
        "steps": {"rows_read": steps.rows_read, "bad_rows_skipped": steps.bad_rows_skipped,
                  "filtered": steps.filtered, "filter_reasons": dict(steps.filter_reasons),
                  "exact_duplicates": steps.exact_duplicates, "near_duplicates": steps.near_duplicates,
                  "duplicates_removed": steps.exact_duplicates + steps.near_duplicates,
                  "pii_replaced": dict(steps.pii_replaced), "rows_kept": steps.rows_kept},
        "splits": {name: part.num_rows for name, part in splits.items()},
        "lengths": lengths.summary(), "histogram": lengths.histogram(),
        "config": cfg.model_dump(mode="json"),
    }


def _write(splits: Any, card: dict, report_files: list[Path], out_dir: Path, cfg: DataPrepConfig) -> Any:
    from datasets import load_from_disk

    with atomic_dir(out_dir) as tmp:
        if cfg.output.format == "datasets":
            splits.save_to_disk(str(tmp))
        else:
            for name, part in splits.items():
                part.to_json(str(tmp / f"{name}.jsonl"), lines=True, force_ascii=False)
        for f in report_files:
            shutil.copy(f, tmp / f.name)
        atomic_write_json(tmp / "data_card.json", card)
        atomic_write_text(tmp / "data_card.md", render_card(card))
    return load_from_disk(str(out_dir)) if cfg.output.format == "datasets" else splits
