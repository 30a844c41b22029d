"""OpenAI-style tool-calling and reasoning rows: `tunesmith data check` accepts them (tools, assistant
tool_calls with JSON-string or object arguments, tool results, reasoning_content, text content
parts) and refuses malformed ones with one file:line: field line each (exit 2); conversion keeps
them in a form Arrow can store and chat templates render."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import run_cli_here

from tunesmith.data.chat import render_messages
from tunesmith.data.formats import convert, storage_features, storage_row

TOKENIZERS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tokenizers"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
U = {"role": "user", "content": "Weather in Paris?"}
CALL = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
RESULT = {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18}'}
ANSWER = {"role": "assistant", "content": "18 C in Paris."}
GOOD = [
    {"messages": [U, CALL, RESULT, ANSWER], "tools": [WEATHER]},
    {"messages": [U, {"role": "assistant", "content": "", "tool_calls": [      # arguments as an object, no id
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lyon"}}}]},
        {"role": "tool", "content": "21"}, {"role": "assistant", "content": "21 C."}], "tools": [WEATHER]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "2+2?"}]},
                  {"role": "assistant", "content": "4", "reasoning_content": "Two and two make four."}]},
    {"messages": [U, {"role": "assistant", "content": "Let me look.", "tool_calls": [], "reasoning_content": None}]},
]


def _check(capsys, path: Path, *extra: str):
    return run_cli_here(capsys, "data", "check", str(path), *extra)


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_tool_and_reasoning_rows_pass_the_check(tmp_path, capsys):
    proc = _check(capsys, _write(tmp_path / "tools.jsonl", GOOD))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "format messages (conversational)" in proc.stdout and "rows: 4  good: 4  bad: 0" in proc.stdout


def _bad(change: dict) -> dict:
    """The good tool row with {(message index, key): new value (None: removed)} applied."""
    msgs = json.loads(json.dumps([U, CALL, RESULT, ANSWER]))
    for (index, key), value in change.items():
        if value is None:
            msgs[index].pop(key)
        else:
            msgs[index][key] = value
    return {"messages": msgs, "tools": [WEATHER]}


FN = CALL["tool_calls"][0]
# (case, bad row on line 2, the problem after "FILE:2: ")
CASES = [
    ("tool_calls not a list", _bad({(1, "tool_calls"): FN}),
     'field "messages" message 2 (assistant) tool_calls must be a list of calls, got dict'),
    ("function without name", _bad({(1, "tool_calls"): [{"type": "function", "function": {"arguments": "{}"}}]}),
     'field "messages" message 2 (assistant) tool_calls[1].function has no name'),
    ("arguments not JSON", _bad({(1, "tool_calls"): [{**FN, "function": {"name": "get_weather",
                                                                          "arguments": "{city: Paris"}}]}),
     'field "messages" message 2 (assistant) tool_calls[1].function.arguments is not valid JSON'),
    ("arguments not an object", _bad({(1, "tool_calls"): [{**FN, "function": {"name": "get_weather",
                                                                               "arguments": "[1, 2]"}}]}),
     'field "messages" message 2 (assistant) tool_calls[1].function.arguments must be a JSON object, got list'),
    ("tool message without content", _bad({(2, "content"): None}),
     'field "messages" message 3 (tool) "content" must be a string, got NoneType'),
    ("unknown role", _bad({(2, "role"): "function"}),
     'field "messages" message 3 has role "function" (expected one of system, user, assistant, tool)'),
    ("tool_calls on a user turn", _bad({(0, "tool_calls"): CALL["tool_calls"]}),
     'field "messages" message 1 (user) has tool_calls; only assistant messages may'),
    ("reasoning not a string", _bad({(3, "reasoning_content"): ["think"]}),
     'field "messages" message 4 (assistant) reasoning_content must be a string, got list'),
    ("image content", _bad({(0, "content"): [{"type": "image_url", "image_url": {"url": "x.png"}}]}),
     "field \"messages\" message 1 (user) \"content\" part 1 is 'image_url'; only text parts"),
    ("tool result for no call", _bad({(2, "tool_call_id"): "call_9"}),
     'field "messages" message 3 (tool) tool_call_id "call_9" answers no call of the assistant turn before it'),
    ("tools not a list", {"messages": [U, CALL, RESULT, ANSWER], "tools": {"name": "get_weather"}},
     'field "tools" must be a list of function schemas, got dict'),
    ("tool without name", {"messages": [U, CALL, RESULT, ANSWER], "tools": [{"type": "function", "function": {}}]},
     'field "tools" tool 1 has no function name'),
    ("tool calls in a preference row", {"prompt": [U], "chosen": [CALL], "rejected": [ANSWER]},
     'field "chosen" message 1 (assistant) has tool_calls, which only messages rows carry'),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_row_is_one_line_naming_file_line_and_field(tmp_path, capsys, case):
    _, bad, expected = case
    first = GOOD[0] if "messages" in bad else {"prompt": "q", "chosen": "a", "rejected": "b"}
    path = _write(tmp_path / "train.jsonl", [first, bad, first])
    proc = _check(capsys, path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if re.match(rf"{re.escape(str(path))}:\d+: ", line)]
    assert len(lines) == 1 and lines[0].startswith(f"{path}:2: {expected}"), (lines, expected)
    assert "Traceback" not in proc.stderr


def test_conversion_keeps_tools_calls_and_reasoning():
    row = convert(GOOD[0], "messages")
    assert json.loads(row["tools"]) == [WEATHER]                      # a JSON string: the cleaning step reads lists as messages
    assert row["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}, "id": "call_1"}]}
    assert row["messages"][2] == {"role": "tool", "content": '{"temp_c": 18}', "tool_call_id": "call_1"}
    assert convert(GOOD[1], "messages")["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Lyon"}'
    think = convert(GOOD[2], "messages")["messages"]
    assert think == [{"role": "user", "content": "2+2?"},
                     {"role": "assistant", "content": "4", "reasoning_content": "Two and two make four."}]
    assert convert(GOOD[3], "messages")["messages"][1] == {"role": "assistant", "content": "Let me look."}
    sharegpt = convert({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}],
                        "tools": json.dumps([WEATHER])}, "sharegpt")
    assert json.loads(sharegpt["tools"]) == [WEATHER]


def test_storage_features_keep_rows_whose_keys_differ(tmp_path):
    """Plain conversations first, tool rows after the first written batch: with the declared
    features nothing is dropped or mis-cast (inferred ones drop `tools`, then fail to cast)."""
    from datasets import Dataset

    plain = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    rows = [convert(plain, "messages")] * 3 + [convert(GOOD[0], "messages"), convert(GOOD[2], "messages")]
    ds = Dataset.from_generator(lambda: (storage_row(r) for r in rows), features=storage_features(rows[0]),
                                cache_dir=str(tmp_path), writer_batch_size=2)
    assert ds[0] == {**rows[0], "tools": None}
    assert ds[3] == rows[3] and ds[4] == {**rows[4], "tools": None}
    assert storage_features({"text": "x"}) is None


def test_rendered_with_qwen3_and_checked_with_a_tokenizer(tmp_path, capsys):
    folder = TOKENIZERS / "qwen3"
    if not (folder / "tokenizer.json").is_file():
        pytest.skip(f"no {folder}")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    row = convert(GOOD[0], "messages")
    text = render_messages(row["messages"], tok, tools=row["tools"])
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in text
    assert '"name": "get_weather", "description": "Current weather in a city"' in text      # the schema
    path = _write(tmp_path / "tools.jsonl", GOOD)
    assert _check(capsys, path, "--tokenizer", str(folder)).returncode == 0
    llama = TOKENIZERS / "llama3_1"                       # its template renders no tools and no tool calls
    proc = _check(capsys, path, "--tokenizer", str(llama))
    assert proc.returncode == 2
    assert f'{path}:1: field "tools" the chat template does not render tools' in proc.stdout
    assert f'{path}:2: field "tools" the chat template does not render tools' in proc.stdout
    assert f'{path}:3: field "messages" the chat template does not render message 2 (assistant) reasoning_content' \
        in proc.stdout


def test_prepare_keeps_tool_rows_after_a_thousand_plain_ones_and_mixes_in_prompt_completion(tmp_path):
    """datasets infers a schema from its first 1,000 rows: tool rows later in the file keep their
    `tools` and their messages' extra keys; prompt-completion inputs mixed in become conversations."""
    from tunesmith.data import prepare

    plain = [{"messages": [{"role": "user", "content": f"Say {i}"}, {"role": "assistant", "content": f"{i}."}]}
             for i in range(1001)]
    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(json.dumps(r) + "\n" for r in [*plain, *GOOD]))
    pc = tmp_path / "pc.jsonl"
    pc.write_text(json.dumps({"prompt": "Hi", "completion": "Hello."}) + "\n")
    out = prepare(inputs=[{"path": str(chat)}, {"path": str(pc)}], dedup={"exact": False, "near": False},
                  split={"validation": 0}).dataset["train"]
    rows = list(out)
    assert len(rows) == 1001 + len(GOOD) + 1
    with_tools = [r for r in rows if r["tools"]]
    assert len(with_tools) == sum(1 for r in GOOD if "tools" in r)
    calls = [m for r in rows for m in r["messages"] if m.get("tool_calls")]
    assert calls and calls[0]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert any(m.get("reasoning_content") for r in rows for m in r["messages"])
    assert any(r["messages"][-1]["content"] == "Hello." for r in rows)
