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

A msg is `{"role": "system"|"user"|"assistant"|"tool", "content": str}`, with, when the row has them
(OpenAI style, see `_messages`): assistant `tool_calls` (`[{"type": "function", "function": {"name": str,
"arguments": str}, "id"?: str}]`, arguments a JSON object as a canonical JSON string; content "" for a
call-only turn) and `reasoning_content` (str); tool `tool_call_id` and `name` (str). A conversational
row may carry `tools` (the function schemas, a JSON string of the list: a list of schemas would be
read as messages by the cleaning step). `tunesmith.data.chat.render_messages` turns both back into
the objects chat templates expect.

Example:
    >>> detect_format({"instruction": "Add 2+2", "output": "4"})
    'alpaca'
    >>> convert({"instruction": "Add 2+2", "output": "4"}, "alpaca")["completion"]
    [{'role': 'assistant', 'content': '4'}]
"""
from __future__ import annotations

import json
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


def _text_content(content: Any, where: str, content_key: str) -> str:
    """A message's text: a string, or OpenAI content parts `[{"type": "text", "text": ...}]` joined by
    newlines (as vLLM joins them); any other part (image, audio) is refused."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        texts = []
        for j, part in enumerate(content, start=1):
            if not isinstance(part, dict) or part.get("type", "text") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RowProblem(None, f'{where} "{content_key}" part {j} is {kind!r}; only text parts '
                                 '({"type": "text", "text": ...}) are supported', "give the text as a string")
            texts.append(part["text"])
        return "\n".join(texts)
    raise RowProblem(None, f'{where} "{content_key}" must be a string, got {type(content).__name__}')


def _json_object(value: Any, where: str) -> str:
    """Tool-call arguments (a JSON string or an object) -> a canonical JSON string of an object."""
    if value is None:
        return "{}"
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise RowProblem(None, f"{where} is not valid JSON ({e.msg} at column {e.colno})",
                             'give a JSON object, e.g. {"city": "Paris"}, or a string holding one') from None
    if not isinstance(value, dict):
        raise RowProblem(None, f"{where} must be a JSON object, got {type(value).__name__}",
                         'arguments name each parameter, e.g. {"city": "Paris"}')
    return json.dumps(value, ensure_ascii=False)


def _tool_calls(value: Any, where: str) -> list[dict[str, Any]]:
    """OpenAI `tool_calls` -> `[{"type": "function", "function": {"name", "arguments"}, "id"?}]`.
    A call given flat (`{"name", "arguments"}`, as some datasets do) is accepted too."""
    if not isinstance(value, list):
        raise RowProblem(None, f"{where} tool_calls must be a list of calls, got {type(value).__name__}",
                         'tool_calls: [{"type": "function", "function": {"name": ..., "arguments": {...}}}]')
    out = []
    for j, call in enumerate(value, start=1):
        at = f"{where} tool_calls[{j}]"
        if not isinstance(call, dict):
            raise RowProblem(None, f"{at} must be an object, got {type(call).__name__}")
        if call.get("type", "function") != "function":
            raise RowProblem(None, f'{at} has type {call.get("type")!r}; only "function" calls are supported')
        fn = call.get("function", call if "name" in call else None)
        if not isinstance(fn, dict):
            raise RowProblem(None, f'{at} has no "function" object', 'each call is {"type": "function", '
                             '"function": {"name": ..., "arguments": {...}}}')
        name = fn.get("name")
        if not isinstance(name, str) or not name.strip():
            raise RowProblem(None, f"{at}.function has no name" if name is None else
                             f"{at}.function.name must be a non-empty string, got {name!r}")
        entry: dict[str, Any] = {"type": "function", "function": {
            "name": name, "arguments": _json_object(fn.get("arguments"), f"{at}.function.arguments")}}
        if call.get("id") is not None:
            if not isinstance(call["id"], str):
                raise RowProblem(None, f"{at}.id must be a string, got {type(call['id']).__name__}")
            entry["id"] = call["id"]
        out.append(entry)
    return out


def _tools(value: Any) -> str:
    """The row's `tools` (OpenAI function schemas, a list or a JSON string of one) -> a JSON string of
    the list, after checking that each names its function (`{"type": "function", "function":
    {"name": ...}}` or `{"name": ...}`)."""
    if isinstance(value, str):                         # LLaMA-Factory keeps them as a JSON string
        try:
            value = json.loads(value)
        except ValueError as e:
            raise RowProblem("tools", f"is a string but not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(value, list):
        raise RowProblem("tools", f"must be a list of function schemas, got {type(value).__name__}",
                         'tools: [{"type": "function", "function": {"name": ..., "parameters": {...}}}]')
    for j, tool in enumerate(value, start=1):
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"].strip():
            raise RowProblem("tools", f"tool {j} has no function name",
                             '{"type": "function", "function": {"name": ..., "parameters": {...}}}')
    return json.dumps(value, ensure_ascii=False)


def _messages(value: Any, field: str, *, role_key: str = "role", content_key: str = "content",
              role_map: dict[str, str] | None = None, extras: bool = False) -> list[dict[str, Any]]:
    """Checked messages. With `extras` (messages and sharegpt rows) they may carry tool calls and
    reasoning; elsewhere (prompt/completion, preference lists) those are refused, not dropped."""
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
        role = valid[role]
        where = f"message {i} ({role})"
        if not extras:
            extra = next((k for k in ("tool_calls", "reasoning_content", "tool_call_id") if msg.get(k) not in (None, [])), None)
            if extra is not None:
                raise RowProblem(field, f"{where} has {extra}, which only messages rows carry",
                                 'give the conversation as {"messages": [...]} to train tool calls and reasoning')
        try:
            out.append(_message(msg, role, where, content_key, extras))
        except RowProblem as p:
            raise RowProblem(field, p.message, p.fix) from None
    return out


def _message(msg: dict[str, Any], role: str, where: str, content_key: str, extras: bool) -> dict[str, Any]:
    """One checked message: role and text content, plus the tool-calling and reasoning keys its
    role may carry (assistant: tool_calls, reasoning_content; tool: tool_call_id, name)."""
    calls = msg.get("tool_calls") if msg.get("tool_calls") != [] else None   # exports write [] for "no call"
    for key, roles in (("tool_calls", ("assistant",)), ("reasoning_content", ("assistant",)),
                       ("tool_call_id", ("tool",))):
        if msg.get(key) not in (None, []) and role not in roles:
            raise RowProblem(None, f"{where} has {key}; only {' and '.join(roles)} messages may",
                             f"remove {key} from this message")
    content = msg.get(content_key)
    if content is None and calls is not None:
        content = ""                                   # a turn that only calls tools
    else:
        content = _text_content(content, where, content_key)
    out: dict[str, Any] = {"role": role, "content": content}
    if calls is not None:
        out["tool_calls"] = _tool_calls(calls, where)
    elif not content.strip():
        raise RowProblem(None, f"{where} is empty", "every turn needs text; remove the row or the turn")
    reasoning = msg.get("reasoning_content")
    if reasoning is not None:
        if not isinstance(reasoning, str):
            raise RowProblem(None, f"{where} reasoning_content must be a string, got {type(reasoning).__name__}")
        if reasoning.strip():
            out["reasoning_content"] = reasoning
    if role == "tool" and extras:
        for key in ("tool_call_id", "name"):
            if msg.get(key) is not None:
                if not isinstance(msg[key], str):
                    raise RowProblem(None, f"{where} {key} must be a string, got {type(msg[key]).__name__}")
                out[key] = msg[key]
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
    if fmt in ("messages", "sharegpt"):
        field = "messages" if fmt == "messages" else "conversations"
        out = {"messages": _messages(_require(row, field, fmt), field, extras=True) if fmt == "messages" else
               _messages(_require(row, field, fmt), field, role_key="from", content_key="value",
                         role_map=SHAREGPT_ROLES, extras=True)}
        _check_tool_results(out["messages"], field)
        if row.get("tools") is not None:
            out["tools"] = _tools(row["tools"])
        return out
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


def _check_tool_results(messages: list[dict[str, Any]], field: str) -> None:
    """A tool result that names its call (`tool_call_id`) names one of the calls of the assistant
    turn it answers, when those calls have ids."""
    ids: set[str] = set()
    for i, msg in enumerate(messages, start=1):
        if msg["role"] == "assistant":
            ids = {c["id"] for c in msg.get("tool_calls") or () if c.get("id")}
        elif msg["role"] == "tool" and msg.get("tool_call_id") and ids and msg["tool_call_id"] not in ids:
            raise RowProblem(field, f'message {i} (tool) tool_call_id "{msg["tool_call_id"]}" answers no call '
                             f"of the assistant turn before it (ids: {', '.join(sorted(ids))})")


def message_text(msg: dict[str, Any]) -> str:
    """All the text one message carries: content, reasoning and tool calls (for lengths and keys).

    Example:
        >>> message_text({"role": "assistant", "content": "", "tool_calls": [
        ...     {"type": "function", "function": {"name": "f", "arguments": "{}"}}]})
        'f {}'
    """
    parts = [msg.get("reasoning_content") or "", msg["content"]]
    parts += [f'{c["function"]["name"]} {c["function"]["arguments"]}' for c in msg.get("tool_calls") or ()]
    return "\n".join(p for p in parts if p)


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


def storage_features(row: dict[str, Any]) -> Any:
    """Arrow features for storing internal rows shaped like `row` (None: let datasets infer them, as
    for every kind but conversations). A conversation's messages are stored as JSON (`List(Json())`)
    and `tools` as a string: messages have different keys (tool calls, reasoning), and datasets 5.2
    infers a schema from the first batch only, so a message key first seen later fails to cast and
    a `tools` column first seen later is dropped. Pair with `storage_row`.

    Example:
        Dataset.from_generator(lambda: (storage_row(r) for r in rows), features=storage_features(rows[0]))
    """
    if "messages" not in row:
        return None
    from datasets import Features, Json, List, Value

    return Features({"messages": List(Json()), "tools": Value("string")})


def storage_row(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with every column `storage_features` declares (a conversation without tools gets
    `tools: None`)."""
    return {**row, "tools": row.get("tools")} if "messages" in row else row


def as_conversation(row: dict[str, Any]) -> dict[str, Any]:
    """A prompt-completion row as one conversation (used when mixing with conversational data)."""
    if "completion" in row and "label" not in row:
        return {"messages": row["prompt"] + row["completion"]}
    return row
