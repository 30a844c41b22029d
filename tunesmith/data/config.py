"""`DataPrepConfig`: the one typed description of a data preparation run.

The same tree is filled by a YAML recipe (`data:` block), by dotted flags
(`--clean.max_chars 20000`) and by the Python API. Field defaults are the only defaults.

Example:
    >>> from tunesmith.core.config import coerce
    >>> cfg = coerce(DataPrepConfig, {"inputs": [{"path": "train.jsonl"}], "split": {"validation": 0.1}})
    >>> cfg.on_bad_rows
    'error'
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..core.config import Section

FormatName = Literal["auto", "text", "alpaca", "prompt_completion", "messages", "sharegpt",
                     "preference", "preference_implicit", "kto", "classification"]


class InputConfig(Section):
    """One source of rows: a file, a folder, a `save_to_disk` folder or a Hub dataset id."""

    path: str = Field(description="file (.jsonl/.json/.csv/.tsv/.parquet/.txt, optionally .gz), "
                                  "folder, save_to_disk folder, or Hub dataset id when online")
    weight: float | None = Field(None, gt=0, description="mixing weight; when any input has one, "
                                 "inputs are interleaved with these probabilities")
    format: FormatName | None = Field(None, description="force this input's format (else the top-level format)")
    columns: dict[str, str] | None = Field(None, description="this input's column mapping (else the top-level columns)")
    split: str = Field("train", description="split to read from a DatasetDict folder or a Hub dataset")
    role: Literal["train", "validation"] = Field("train", description=(
        "train: mixed into the training rows | validation: all its rows are the validation split "
        "(instead of split.validation; not mixed, weighted or limited by max_rows)"))
    limit: int | None = Field(None, gt=0, description="keep at most this many rows of this input (seeded sample)")
    text_unit: Literal["file", "paragraph", "line"] = Field(
        "paragraph", description="how raw .txt files are cut into rows")
    header: bool = Field(True, description="CSV/TSV files have a header row; false names columns 0,1,2...")


class CheckConfig(Section):
    """Row validation and length statistics."""

    tokenizer: str | None = Field(None, description="tokenizer folder for token lengths and chat rendering "
                                  "(none: lengths are counted in characters)")
    max_length: int | None = Field(None, gt=0, description="report rows longer than this many tokens (would be truncated)")
    labels: list[str | int] | None = Field(None, description="allowed labels for classification rows "
                                           "(none: any label, the set found is reported)")
    alternate_roles: bool = Field(True, description="require user/assistant turns to alternate "
                                  "(most chat templates do)")
    max_problems: int = Field(10000, gt=0, description="problems kept in memory for the report; the rest are only counted")


class CleanConfig(Section):
    """Text cleaning and language-agnostic quality filters, applied to every text field of a row."""

    enabled: bool = Field(True, description="run the cleaning step")
    unicode: Literal["NFC", "NFKC", "none"] = Field("NFC", description="Unicode normalization form")
    strip_control: bool = Field(True, description="remove control, zero-width and bidi-override characters "
                                "(newline and tab are kept)")
    whitespace: bool = Field(True, description="\\r\\n -> \\n, non-breaking spaces -> space, strip line ends, "
                             "at most one blank line in a row, strip each field")
    min_chars: int = Field(1, ge=0, description="drop rows whose text has fewer characters")
    max_chars: int | None = Field(None, gt=0, description="drop rows whose text has more characters")
    min_alpha_ratio: float = Field(0.0, ge=0, le=1, description="drop rows where letters are a smaller fraction "
                                   "of non-space characters (0 disables)")
    max_repeated_line_ratio: float = Field(1.0, ge=0, le=1, description="drop rows (of 4+ lines) where repeated "
                                           "lines are a larger fraction of lines (1 disables)")
    max_char_run: int | None = Field(None, gt=1, description="drop rows containing a run of one character "
                                     "longer than this (e.g. 'aaaa...')")


class DedupConfig(Section):
    """Exact and near-duplicate removal (MinHash LSH via datasketch)."""

    exact: bool = Field(True, description="remove rows whose normalized text is identical to an earlier row")
    near: bool = Field(True, description="remove rows whose estimated Jaccard similarity to a kept row "
                       "exceeds `threshold`")
    threshold: float = Field(0.8, gt=0, lt=1, description="Jaccard similarity above which rows are near-duplicates")
    num_perm: int = Field(128, ge=16, description="MinHash permutations")
    shingle: int = Field(5, ge=1, description="word n-gram size for shingles")


class PiiConfig(Section):
    """Replace personal data with typed placeholders (<EMAIL>, <PHONE>, ...)."""

    enabled: bool = Field(False, description="run PII anonymization")
    types: list[Literal["EMAIL", "PHONE", "IP_ADDRESS", "CREDIT_CARD", "IBAN", "API_KEY"]] = Field(
        ["EMAIL", "PHONE", "IP_ADDRESS", "CREDIT_CARD", "IBAN", "API_KEY"], description="kinds of data to replace")
    phone_regions: list[str] = Field(["US"], description="regions whose national phone formats are "
                                     "recognised (numbers written with +country code always are)")


class SplitConfig(Section):
    """Shuffling, sampling and the train/validation split."""

    validation: float | int = Field(0, ge=0, description="validation size: a fraction (< 1) or a row count")
    shuffle: bool = Field(True, description="shuffle rows (seeded) before splitting")
    max_rows: int | None = Field(None, gt=0, description="keep at most this many rows after mixing (seeded sample)")
    stopping: Literal["first_exhausted", "all_exhausted"] = Field(
        "first_exhausted", description="when weighted mixing stops: at the first exhausted input, or when all "
        "are exhausted (oversampling the small ones)")


class OutputConfig(Section):
    """Where prepared data is written (atomically)."""

    dir: str | None = Field(None, description="output folder (none: keep in memory, write nothing)")
    format: Literal["datasets", "jsonl"] = Field("datasets", description="a `save_to_disk` folder or JSONL files")
    overwrite: bool = Field(False, description="replace an existing output folder")


class DataPrepConfig(Section):
    """Read, validate, clean, deduplicate, anonymize, mix and split datasets."""

    inputs: list[InputConfig] = Field(default_factory=list, description="data sources")
    format: FormatName = Field("auto", description="row format (auto: detected from the fields)")
    columns: dict[str, str] = Field(default_factory=dict, description="rename source columns to standard "
                                    "names, e.g. {question: instruction, answer: output}; dotted source "
                                    "paths reach into nested fields (instances.0.output)")
    on_bad_rows: Literal["error", "skip"] = Field("error", description="stop at the first bad row, or skip "
                                                  "bad rows and write a report of every one")
    seed: int = Field(0, description="seed for sampling, mixing and shuffling")
    check: CheckConfig = Field(default_factory=CheckConfig, description="validation")
    clean: CleanConfig = Field(default_factory=CleanConfig, description="cleaning")
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="deduplication")
    pii: PiiConfig = Field(default_factory=PiiConfig, description="PII anonymization")
    split: SplitConfig = Field(default_factory=SplitConfig, description="splits")
    output: OutputConfig = Field(default_factory=OutputConfig, description="output")
