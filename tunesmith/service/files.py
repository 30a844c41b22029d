"""Uploaded files: the multipart body streamed to disk (never held in memory; the size limit stops it
as soon as it is passed), then checked row by row with tunesmith's data check.

OpenAI's file formats are read through column mappings, so the stages get their usual rows:
- chat `{"messages": [...]}` (tunesmith's `messages` format as is);
- DPO `{"input": {"messages": [...]}, "preferred_output": [...], "non_preferred_output": [...]}`
  -> `prompt` / `chosen` / `rejected` (columns `input.messages`, `preferred_output`,
  `non_preferred_output`);
- and every other format `tunesmith data check` reads (alpaca, prompt/completion, preference, KTO, ...).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .methods import RequestError

OPENAI_DPO_COLUMNS = {"input.messages": "prompt", "preferred_output": "chosen", "non_preferred_output": "rejected"}


class TooLarge(Exception):
    pass


async def receive_upload(request: Any, tmp: Path, limit: int) -> tuple[dict[str, str], str | None]:
    """Stream a multipart/form-data body: the `file` part to `tmp` (at most `limit` bytes), the other
    fields returned as strings. Returns (fields, uploaded filename)."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise RequestError("upload the file as multipart/form-data (fields: purpose, file)", "file")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit + 64 * 1024:
        raise TooLarge()
    fields: dict[str, str] = {}
    state: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "name": None, "filename": None,
                             "out": None, "data": bytearray(), "size": 0}

    def on_part_begin():
        state.update(headers={}, name=None, filename=None, data=bytearray())

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].decode("latin-1").lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished():
        _, disp = parse_options_header(state["headers"].get("content-disposition", b""))
        state["name"] = disp.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in disp:
            state["filename"] = os.path.basename(disp[b"filename"].decode("utf-8", "replace")) or "upload.jsonl"
            if state["name"] == "file":
                state["out"] = open(tmp, "wb")

    def on_part_data(data, start, end):
        if state["name"] == "file" and state["out"] is not None:
            state["size"] += end - start
            if state["size"] > limit:
                raise TooLarge()
            state["out"].write(data[start:end])
        else:
            state["data"] += data[start:end]
            if len(state["data"]) > 64 * 1024:
                raise RequestError(f"form field {state['name']!r} is too long", state["name"])

    def on_part_end():
        if state["name"] == "file" and state["out"] is not None:
            state["out"].close()
            state["out"] = None
            fields["__filename__"] = state["filename"]
        elif state["name"]:
            fields[state["name"]] = bytes(state["data"]).decode("utf-8", "replace")

    parser = MultipartParser(params[b"boundary"], {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_part_end": on_part_end,
        "on_header_field": on_header_field, "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished})
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    finally:
        if state["out"] is not None:
            state["out"].close()
    return fields, fields.pop("__filename__", None)


def first_row(path: Path) -> dict | None:
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError:
                    return None
                return row if isinstance(row, dict) else None
    return None


def check_file(path: Path, filename: str) -> tuple[str, dict[str, str], int]:
    """(data kind, column mapping, rows) of an uploaded JSONL file; RequestError naming
    `filename:line` and the field when a row is bad."""
    from ..core.errors import UserError
    from ..data import check_data
    from ..data.formats import FORMAT_KIND

    row = first_row(path)
    columns = OPENAI_DPO_COLUMNS if row is not None and "preferred_output" in row and "input" in row else {}
    try:
        result = check_data({"inputs": [{"path": str(path), "columns": columns or None}]})
    except UserError as e:
        raise RequestError(str(e).replace(str(path), filename), "file", code="invalid_file") from None
    if not result.ok:
        p = result.problems[0]
        line = p.line
        field = next((src for src, dst in columns.items() if dst == p.field), p.field)
        text = str(UserError(p.message, file=filename, line=line, field=field, fix=p.fix))
        more = result.problem_count - 1
        raise RequestError(text + (f" (and {more} more bad rows)" if more else ""), "file", code="invalid_file")
    fmt = next(iter(result.formats.values()))
    return FORMAT_KIND[fmt], columns, result.good_rows
