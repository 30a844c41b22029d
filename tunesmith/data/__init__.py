"""Data: read and detect formats, check every row, clean, deduplicate, anonymize, mix, split.

    from tunesmith.data import check_data, prepare
    print(check_data("train.jsonl", tokenizer="my-model", max_length=2048).render())
    prepare({"inputs": [{"path": "train.jsonl"}], "output": {"dir": "prepared"}})
"""
from .chat import load_tokenizer, render_messages, row_texts, token_length
from .config import DataPrepConfig
from .formats import FORMAT_KIND, convert, detect_format, map_columns
from .pii import Anonymizer
from .prepare import PrepareResult, prepare
from .validate import CheckResult, Problem, check_data

__all__ = ["Anonymizer", "CheckResult", "DataPrepConfig", "FORMAT_KIND", "PrepareResult", "Problem", "check_data",
           "convert", "detect_format", "load_tokenizer", "map_columns", "prepare", "render_messages", "row_texts",
           "token_length"]
