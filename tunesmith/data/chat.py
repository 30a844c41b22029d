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


def render_messages(messages: list[dict[str, str]], tokenizer: Any, *, add_generation_prompt: bool = False,
                    continue_final_message: bool = False) -> str:
    """Messages -> the text the model is trained on or prompted with.

    Example:
        render_messages([{"role": "user", "content": "hi"}], tok)
        # with ChatML: '<|im_start|>user\\nhi<|im_end|>\\n'
    """
    return tokenizer.apply_chat_template(messages, chat_template=chat_template_of(tokenizer), tokenize=False,
                                         add_generation_prompt=add_generation_prompt,
                                         continue_final_message=continue_final_message)


def row_texts(row: dict[str, Any], tokenizer: Any) -> list[str]:
    """The full texts an internal row becomes (two for a preference pair), rendered once here.
    A template that rejects the conversation is reported as a RowProblem."""
    if "text" in row and "label" not in row:
        return [row["text"]]
    convs = conversation_of(row)
    if not convs:
        return [row["text"] if "text_pair" not in row else row["text"] + "\n" + row["text_pair"]]
    field = "messages" if "messages" in row else "prompt"
    try:
        return [render_messages(c, tokenizer) for c in convs]
    except Exception as e:  # jinja2 TemplateError from raise_exception() in the template
        raise RowProblem(field, f"the chat template rejects this conversation: {e}") from None


def token_length(row: dict[str, Any], tokenizer: Any) -> int:
    """Tokens of the longest text of `row` (chat text is tokenized without extra special tokens;
    plain and classification text with them, as the trainers do)."""
    if "label" in row and "text" in row:
        pair = row.get("text_pair")
        return len(tokenizer(row["text"], pair)["input_ids"])
    special = "text" in row
    return max(len(tokenizer(t, add_special_tokens=special)["input_ids"]) for t in row_texts(row, tokenizer))
