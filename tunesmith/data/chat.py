"""The one place a chat template is applied.

`render_messages` turns a message list into the text the model sees, with the tokenizer's
own chat template, or with ChatML when the tokenizer has none (base models). Length
checks and the stages that need plain text all go through it.

Example:
    tok = load_tokenizer("path/to/tokenizer")
    render_messages([{"role": "user", "content": "hi"}], tok, add_generation_prompt=True)
    # with ChatML: '<|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\n'
"""
from __future__ import annotations

import json
from typing import Any

from .formats import RowProblem, conversation_of

# ChatML, used only when the tokenizer carries no template of its own.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def load_tokenizer(path: str) -> Any:
    """A tokenizer for `data check` / `prepare` token lengths (`core.modelio.load_tokenizer`)."""
    from ..core.modelio import load_tokenizer as load

    return load(path, field="check.tokenizer")


def chat_template_of(tokenizer: Any) -> str:
    """The tokenizer's chat template, or ChatML when it has none."""
    return getattr(tokenizer, "chat_template", None) or CHATML_TEMPLATE


def template_message(msg: dict[str, Any]) -> dict[str, Any]:
    """An internal message as chat templates expect it: keys without a value dropped (templates
    test `'tool_calls' in message`; Arrow fills absent keys with None) and tool-call arguments as an
    object (templates apply `tojson` to them).

    Example:
        >>> template_message({"role": "assistant", "content": "", "reasoning_content": None, "tool_calls": [
        ...     {"type": "function", "id": None, "function": {"name": "f", "arguments": '{"x": 1}'}}]})
        {'role': 'assistant', 'content': '', 'tool_calls': [{'type': 'function', 'function': {'name': 'f', 'arguments': {'x': 1}}}]}
    """
    out = {k: v for k, v in msg.items() if v is not None}
    if out.get("tool_calls"):
        calls = []
        for call in out["tool_calls"]:
            call = {k: v for k, v in call.items() if v is not None}
            fn = dict(call.get("function") or {})
            if isinstance(fn.get("arguments"), str):
                try:
                    fn["arguments"] = json.loads(fn["arguments"])
                except ValueError:
                    pass
            calls.append({**call, "function": fn})
        out["tool_calls"] = calls
    return out


def tools_of(tools: Any) -> list[dict] | None:
    """A row's `tools` (JSON string, list or None) as the list templates take."""
    if tools is None or tools == "":
        return None
    return json.loads(tools) if isinstance(tools, str) else list(tools)


def render_messages(messages: list[dict[str, Any]], tokenizer: Any, *, add_generation_prompt: bool = False,
                    continue_final_message: bool = False, tools: Any = None) -> str:
    """Messages (and the row's `tools`, if any) -> the text the model is trained on or prompted with.

    Example:
        render_messages([{"role": "user", "content": "hi"}], tok)
        # with ChatML: '<|im_start|>user\\nhi<|im_end|>\\n'
    """
    extra = {"tools": tools_of(tools)} if tools is not None else {}
    return tokenizer.apply_chat_template([template_message(m) for m in messages],
                                         chat_template=chat_template_of(tokenizer), tokenize=False,
                                         add_generation_prompt=add_generation_prompt,
                                         continue_final_message=continue_final_message, **extra)


def unrendered(messages: list[dict[str, Any]], tokenizer: Any, tools: Any = None) -> str | None:
    """What of a conversation the chat template leaves out of its text, or None: the row's `tools`,
    or a message's `tool_calls` / `reasoning_content` (each message is rendered as the last one,
    where templates that drop earlier turns' reasoning, like Qwen3's, still show it). Training on
    such a row would teach a different conversation than the data holds.

    Example:
        unrendered([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "",
                     "tool_calls": [...]}], llama3_tok)
        # -> 'message 2 (assistant) tool_calls' with a template that has no tool-call branch
    """
    if tools_of(tools) and render_messages(messages, tokenizer, tools=tools) == render_messages(messages, tokenizer):
        return "tools"
    for i, msg in enumerate(messages):
        keys = [k for k in ("tool_calls", "reasoning_content") if msg.get(k)]
        if not keys:
            continue
        shown = render_messages(messages[:i + 1], tokenizer, tools=tools)
        for key in keys:
            without = {k: v for k, v in msg.items() if k != key}
            if render_messages(messages[:i] + [without], tokenizer, tools=tools) == shown:
                return f"message {i + 1} ({msg['role']}) {key}"
    return None


def has_extras(messages: list[dict[str, Any]], tools: Any = None) -> bool:
    """Whether a conversation carries tools, tool calls or reasoning (what `unrendered` checks)."""
    return bool(tools_of(tools)) or any(m.get("tool_calls") or m.get("reasoning_content") for m in messages)


def row_texts(row: dict[str, Any], tokenizer: Any) -> list[str]:
    """The full texts an internal row becomes (two for a preference pair), rendered once here.
    A template that rejects the conversation is reported as a RowProblem."""
    if "text" in row and "label" not in row:
        return [row["text"]]
    convs = conversation_of(row)
    if not convs:
        return [row["text"] if "text_pair" not in row else row["text"] + "\n" + row["text_pair"]]
    field = "messages" if "messages" in row else "prompt"
    tools = row.get("tools")
    try:
        texts = [render_messages(c, tokenizer, tools=tools) for c in convs]
        missing = [m for c in convs if has_extras(c, tools) and (m := unrendered(c, tokenizer, tools))]
    except Exception as e:  # jinja2 TemplateError from raise_exception() in the template
        raise RowProblem(field, f"the chat template rejects this conversation: {e}") from None
    if missing:
        raise RowProblem("tools" if missing[0] == "tools" else field, f"the chat template does not render {missing[0]}",
                         "use a template that renders tool calls and reasoning (e.g. the model's tool-calling "
                         "template), or remove them from the data")
    return texts


def token_length(row: dict[str, Any], tokenizer: Any) -> int:
    """Tokens of the longest text of `row` (chat text is tokenized without extra special tokens;
    plain and classification text with them, as the trainers do)."""
    if "label" in row and "text" in row:
        pair = row.get("text_pair")
        return len(tokenizer(row["text"], pair)["input_ids"])
    special = "text" in row
    return max(len(tokenizer(t, add_special_tokens=special)["input_ids"]) for t in row_texts(row, tokenizer))
