"""Row formats: detect them from the fields, map columns, convert to TRL's standard forms.

Internal forms (what the training stages receive, TRL 1.16's standard dataset formats):

| format (input)                 | kind                | internal row                                   |
|--------------------------------|---------------------|------------------------------------------------|
| text                           | language_modeling   | {"text": str}                                  |
| messages, sharegpt             | conversational      | {"messages": [msg]}                            |
| alpaca, prompt_completion      | prompt_completion   | {"prompt": [msg], "completion": [msg]}         |
| preference, preference_implicit| preference          | {"prompt": [msg], "chosen": [msg], "rejected": [msg]} |
| kto                            | unpaired_preference | {"prompt": [msg], "completion": [msg], "label": bool} |
| classification                 | classification      | {"text": str, "text_pair"?: str, "label": int/float/str} |

A msg is `{"role": "system"|"user"|"assistant"|"tool", "content": str}`.

Example:
    >>> detect_format({"instruction": "Add 2+2", "output": "4"})
    'alpaca'
    >>> convert({"instruction": "Add 2+2", "output": "4"}, "alpaca")["completion"]
    [{'role': 'assistant', 'content': '4'}]
"""
from __future__ import annotations

import re
from typing import Any

FORMAT_KIND = {
    "text": "language_modeling", "messages": "conversational", "sharegpt": "conversational",
    "alpaca": "prompt_completion", "prompt_completion": "prompt_completion",
    "preference": "preference", "preference_implicit": "preference",
    "kto": "unpaired_preference", "classification": "classification",
}
FORMAT_FIELDS = {
    "text": "text", "messages": "messages", "sharegpt": "conversations",
    "alpaca": "instruction, optional input, output", "prompt_completion": "prompt, completion",
    "preference": "prompt, chosen, rejected", "preference_implicit": "chosen, rejected (whole conversations)",
    "kto": "prompt, completion, label", "classification": "text (or sentence1/sentence2, ...), label",
}
ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "tool": "tool"}
# (first text field, optional second text field) tried in order for classification rows
TEXT_FIELDS = (("text", "text_pair"), ("sentence1", "sentence2"), ("premise", "hypothesis"),
               ("question", "sentence"), ("question", "passage"), ("sentence", None))
HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ ]?")


class RowProblem(Exception):
    """What is wrong with one row: the field, the message, and how to fix it."""

    def __init__(self, field: str | None, message: str, fix: str | None = None):
        super().__init__(message)
        self.field, self.message, self.fix = field, message, fix


def detect_format(row: dict[str, Any]) -> str | None:
    """The format a row's fields indicate, or None when no format fits.

    Example:
        >>> detect_format({"chosen": "a", "rejected": "b"})
        'preference_implicit'
    """
    keys = set(row)
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if {"chosen", "rejected"} <= keys:
        return "preference" if "prompt" in keys else "preference_implicit"
    if {"prompt", "completion", "label"} <= keys:
        return "kto"
    if {"prompt", "completion"} <= keys:
        return "prompt_completion"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if "label" in keys and any(first in keys for first, _ in TEXT_FIELDS):
        return "classification"
    if "text" in keys:
        return "text"
    return None


def get_path(row: dict[str, Any], path: str) -> tuple[bool, Any]:
    """(found, value) for a column name or a dotted path into nested dicts/lists (`instances.0.input`)."""
    if path in row:
        return True, row[path]
    node: Any = row
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def map_columns(row: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    """Rename source columns to standard names; a missing source column is left missing.

    Example:
        >>> map_columns({"question": "q", "answer": "a"}, {"question": "instruction", "answer": "output"})
        {'instruction': 'q', 'output': 'a'}
    """
    if not columns:
        return row
    out = {k: v for k, v in row.items() if k not in columns}
    for src, dst in columns.items():
        found, value = get_path(row, src)
        if found:
            out[dst] = value
    return out


def _require(row: dict[str, Any], name: str, fmt: str) -> Any:
    if name not in row or row[name] is None:
        raise RowProblem(name, "is missing", f"{fmt} rows need {FORMAT_FIELDS[fmt]}")
    return row[name]


def _string(value: Any, field: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise RowProblem(field, f"must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise RowProblem(field, "is empty", "remove the row or fill the field")
    return value


def _messages(value: Any, field: str, *, role_key: str = "role", content_key: str = "content",
              role_map: dict[str, str] | None = None) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise RowProblem(field, f"must be a list of messages, got {type(value).__name__}")
    if not value:
        raise RowProblem(field, "is an empty list of messages")
    valid = role_map or {r: r for r in ROLES}
    out = []
    for i, msg in enumerate(value, start=1):
        if not isinstance(msg, dict):
            raise RowProblem(field, f"message {i} must be an object, got {type(msg).__name__}")
        if role_key not in msg:
            raise RowProblem(field, f'message {i} has no "{role_key}"', f"each message needs {role_key} and {content_key}")
        role = msg[role_key]
        if role not in valid:
            raise RowProblem(field, f'message {i} has {role_key} "{role}"', f"expected one of {', '.join(valid)}")
        content = msg.get(content_key)
        if not isinstance(content, str):
            raise RowProblem(field, f'message {i} ({valid[role]}) "{content_key}" must be a string, '
                             f"got {type(content).__name__}")
        if not content.strip():
            raise RowProblem(field, f"message {i} ({valid[role]}) is empty",
                             "every turn needs text; remove the row or the turn")
        out.append({"role": valid[role], "content": content})
    return out


def _turns(value: Any, field: str, role: str) -> list[dict[str, str]]:
    """A string becomes one `role` message; a list is read as messages."""
    if isinstance(value, str):
        return [{"role": role, "content": _string(value, field)}]
    return _messages(value, field)


def parse_hh_transcript(text: str, field: str) -> list[dict[str, str]]:
    """Anthropic HH "\\n\\nHuman: ... \\n\\nAssistant: ..." text -> messages.

    Example:
        >>> parse_hh_transcript("\\n\\nHuman: hi\\n\\nAssistant: hello", "chosen")
        [{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': 'hello'}]
    """
    parts = HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise RowProblem(field, 'is a string but not a "Human: ... Assistant: ..." transcript',
                         "give a prompt field, or chosen/rejected as message lists")
    msgs = []
    for who, content in zip(parts[1::2], parts[2::2]):
        role = "user" if who == "Human" else "assistant"
        if not content.strip():
            raise RowProblem(field, f"turn {len(msgs) + 1} ({role}) is empty", "remove the row")
        msgs.append({"role": role, "content": content.strip()})
    return msgs


IDENTICAL_PAIR = "is identical to chosen"
IDENTICAL_PAIR_FIX = "drop the row or give a different rejected answer"


def _plain(text: str) -> str:
    """Text without the differences the cleaning step erases: line-end style, spaces at line ends,
    leading/trailing blank space (indentation is kept: it can be the answer, e.g. in code)."""
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").strip().split("\n"))


def _same_turns(a: list[dict[str, str]], b: list[dict[str, str]]) -> bool:
    """The same messages: roles and contents, up to what `_plain` ignores."""
    return len(a) == len(b) and all(x["role"] == y["role"] and _plain(x["content"]) == _plain(y["content"])
                                    for x, y in zip(a, b))


def _check_pair(chosen: list[dict[str, str]], rejected: list[dict[str, str]]) -> None:
    """A pair whose two answers are the same teaches nothing (its preference margin is zero)."""
    if _same_turns(chosen, rejected):
        raise RowProblem("rejected", IDENTICAL_PAIR, IDENTICAL_PAIR_FIX)


def _split_implicit(chosen: list[dict], rejected: list[dict]) -> tuple[list, list, list]:
    _check_pair(chosen, rejected)
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if n == 0:
        raise RowProblem("chosen", "shares no prompt with rejected (their first turns differ)",
                         "give an explicit prompt field")
    return chosen[:n], chosen[n:], rejected[n:]


def _bool_label(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise RowProblem("label", f"must be true or false, got {value!r}", "KTO labels say whether the completion is desirable")


def _class_label(value: Any) -> int | float | str:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and value.strip():
        s = value.strip()
        for cast in (int, float):
            try:
                return cast(s)
            except ValueError:
                pass
        return s
    raise RowProblem("label", f"must be a class name or number, got {value!r}")


def convert(row: dict[str, Any], fmt: str) -> dict[str, Any]:
    """Convert one (column-mapped) row of format `fmt` to its internal form; RowProblem if it can't.

    Example:
        >>> convert({"prompt": "2+2?", "completion": "4", "label": True}, "kto")["label"]
        True
    """
    if fmt == "text":
        return {"text": _string(_require(row, "text", fmt), "text")}
    if fmt == "messages":
        return {"messages": _messages(_require(row, "messages", fmt), "messages")}
    if fmt == "sharegpt":
        return {"messages": _messages(_require(row, "conversations", fmt), "conversations",
                                      role_key="from", content_key="value", role_map=SHAREGPT_ROLES)}
    if fmt == "alpaca":
        instruction = _string(_require(row, "instruction", fmt), "instruction")
        extra = row.get("input")
        if extra is not None:
            instruction = f"{instruction}\n\n{_string(extra, 'input', allow_empty=True)}".rstrip()
        prompt = [{"role": "user", "content": instruction}]
        if row.get("system"):
            prompt.insert(0, {"role": "system", "content": _string(row["system"], "system")})
        return {"prompt": prompt, "completion": [{"role": "assistant",
                                                  "content": _string(_require(row, "output", fmt), "output")}]}
    if fmt in ("prompt_completion", "kto"):
        out = {"prompt": _turns(_require(row, "prompt", fmt), "prompt", "user"),
               "completion": _turns(_require(row, "completion", fmt), "completion", "assistant")}
        if fmt == "kto":
            out["label"] = _bool_label(_require(row, "label", fmt))
        return out
    if fmt == "preference":
        out = {"prompt": _turns(_require(row, "prompt", fmt), "prompt", "user"),
               "chosen": _turns(_require(row, "chosen", fmt), "chosen", "assistant"),
               "rejected": _turns(_require(row, "rejected", fmt), "rejected", "assistant")}
        _check_pair(out["chosen"], out["rejected"])
        return out
    if fmt == "preference_implicit":
        sides = []
        for name in ("chosen", "rejected"):
            value = _require(row, name, fmt)
            sides.append(parse_hh_transcript(value, name) if isinstance(value, str) else _messages(value, name))
        prompt, chosen, rejected = _split_implicit(*sides)
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    if fmt == "classification":
        for first, second in TEXT_FIELDS:
            if first in row and (second is None or second in row or first == "text"):
                out: dict[str, Any] = {"text": _string(row[first], first)}
                if second is not None and row.get(second) is not None:
                    out["text_pair"] = _string(row[second], second)
                out["label"] = _class_label(_require(row, "label", fmt))
                return out
        raise RowProblem("text", "is missing", f"classification rows need {FORMAT_FIELDS[fmt]}")
    raise ValueError(f"unknown format {fmt!r}")


def conversation_of(row: dict[str, Any]) -> list[list[dict[str, str]]]:
    """The full conversations in an internal row (one, or two for a preference pair)."""
    if "messages" in row:
        return [row["messages"]]
    if "chosen" in row:
        return [row["prompt"] + row["chosen"], row["prompt"] + row["rejected"]]
    if "completion" in row:
        return [row["prompt"] + row["completion"]]
    return []


def check_roles(messages: list[dict[str, str]], field: str, *, alternate: bool) -> None:
    """System only first; then user/assistant alternate (tool turns follow an assistant turn);
    the conversation ends with a non-empty assistant turn.

    Example:
        >>> check_roles([{"role": "user", "content": "hi"}], "messages", alternate=True)
        Traceback (most recent call last):
        ...
        tunesmith.data.formats.RowProblem: has no assistant turn to learn from
    """
    for i, msg in enumerate(messages[1:], start=2):
        if msg["role"] == "system":
            raise RowProblem(field, f"message {i} is a system message; only the first message may be",
                             "merge it into the first system message")
    body = messages[1:] if messages[0]["role"] == "system" else messages
    if not any(m["role"] == "assistant" for m in body):
        raise RowProblem(field, "has no assistant turn to learn from")
    if alternate:
        follows = {None: ("user",), "user": ("assistant",), "assistant": ("user", "tool"),
                   "tool": ("tool", "assistant")}
        prev = None
        offset = len(messages) - len(body)
        for i, msg in enumerate(body, start=1 + offset):
            if msg["role"] not in follows[prev]:
                after = f"after {prev}" if prev else "first"
                raise RowProblem(field, f"message {i} is {msg['role']} {after}; roles must alternate "
                                 "user/assistant", "merge consecutive turns or set check.alternate_roles: false")
            prev = msg["role"]
    if messages[-1]["role"] != "assistant":
        raise RowProblem(field, f"ends with a {messages[-1]['role']} turn; training conversations end "
                         "with an assistant turn", "drop the trailing turn")


def common_kind(formats: dict[str, str]) -> str:
    """The one kind a set of inputs converts to; conversational and prompt-completion inputs mix
    as conversational. UserError for kinds that cannot be trained together.

    Example:
        >>> common_kind({"a.jsonl": "alpaca", "b.jsonl": "sharegpt"})
        'conversational'
    """
    from ..core.errors import UserError

    kinds = {FORMAT_KIND[f] for f in formats.values()}
    if len(kinds) == 1:
        return kinds.pop()
    if kinds == {"conversational", "prompt_completion"}:
        return "conversational"
    listing = ", ".join(f"{src}: {fmt}" for src, fmt in formats.items())
    raise UserError(f"inputs of different kinds cannot be mixed ({listing})", field="inputs",
                    fix="prepare them separately; only conversational and prompt-completion data mix")


def as_conversation(row: dict[str, Any]) -> dict[str, Any]:
    """A prompt-completion row as one conversation (used when mixing with conversational data)."""
    if "completion" in row and "label" not in row:
        return {"messages": row["prompt"] + row["completion"]}
    return row
