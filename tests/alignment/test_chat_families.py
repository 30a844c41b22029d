"""Assistant-only loss masks with the real chat templates of Llama 3.1, Qwen3 and Gemma 3 (tokenizers
in shared/data/tokenizers, see SOURCES.md there; no model is needed): exactly each assistant turn's
content and its end-of-turn text carry loss, for prefix-preserving templates and for Qwen3's, which
re-renders earlier turns (it drops their <think> blocks); `sft.reasoning`; tool calls train, tool
results do not. The reference masks are written out literally below, one run of loss tokens each."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.alignment.sft import SFTSection, tokenize_example
from tunesmith.core.errors import UserError
from tunesmith.data.formats import convert

TOKENIZERS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tokenizers"

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris"}, {"role": "user", "content": "And of Germany?"},
        {"role": "assistant", "content": "Berlin"}]
# what the assistant header (generation prompt) of each family ends with
HEADER = {"llama3_1": "<|start_header_id|>assistant<|end_header_id|>\n\n", "qwen3": "<|im_start|>assistant\n",
          "gemma3": "<start_of_turn>model\n"}
# the two-exchange CHAT with `loss: assistant` (reasoning: auto, the default): content + end of turn
REFERENCE = {"llama3_1": ["Paris<|eot_id|>", "Berlin<|eot_id|>"],
             "qwen3": ["Paris<|im_end|>\n", "Berlin<|im_end|>\n"],
             "gemma3": ["Paris<end_of_turn>\n", "Berlin<end_of_turn>\n"]}

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TOOL_ROW = {"tools": [WEATHER], "messages": [
    {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18}'},
    {"role": "assistant", "content": "18 C in Paris."}]}


def _tokenizer(family: str):
    from transformers import AutoTokenizer

    folder = TOKENIZERS / family
    if not (folder / "tokenizer.json").is_file():
        pytest.skip(f"no {folder} (shared test tokenizers)")
    return AutoTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def toks():
    cache: dict = {}

    def get(family: str):
        if family not in cache:
            cache[family] = _tokenizer(family)
        return cache[family]
    return get


def _runs(row, tok, loss="assistant", reasoning="auto") -> tuple[list[str], list[str]]:
    """(the decoded runs of consecutive loss tokens, the decoded text before each run)."""
    enc = tokenize_example(row, tok, loss, reasoning)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    assert len(ids) == len(mask)
    runs, start = [], None
    for i, m in enumerate(mask + [0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i))
            start = None

    def decode(part: list[int]) -> str:
        return tok.decode(part, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return [decode(ids[s:e]) for s, e in runs], [decode(ids[:s]) for s, _ in runs]


@pytest.mark.parametrize("family", ["llama3_1", "qwen3", "gemma3"])
def test_two_exchanges_train_exactly_the_assistant_turns(toks, family):
    tok = toks(family)
    runs, before = _runs({"messages": CHAT}, tok)
    assert runs == REFERENCE[family]
    # each run starts right after the header (Qwen3: after the empty <think> block it writes before the
    # last reply, out of the loss by default)
    assert before[0].endswith(HEADER[family])
    assert before[1].endswith(HEADER[family] + ("<think>\n\n</think>\n\n" if family == "qwen3" else ""))
    assert "France?" in before[0] and "Germany?" in before[1] and "Germany?" not in before[0]
    completion, _ = _runs({"messages": CHAT}, tok, "completion")
    assert completion == REFERENCE[family][1:]
    # the same conversation as prompt + completion masks the same tokens
    pc, _ = _runs({"prompt": CHAT[:4], "completion": CHAT[4:]}, tok)
    assert pc == REFERENCE[family]


def test_qwen3_reasoning_modes_on_the_empty_filler(toks):
    """Qwen3 writes an empty <think> block before the last reply only (earlier turns lose theirs):
    `auto` (the default) and `mask` leave it out of the loss, `train` trains it as TRL's template does."""
    tok = toks("qwen3")
    assert SFTSection().reasoning == "auto"
    assert _runs({"messages": CHAT}, tok, reasoning="mask")[0] == ["Paris<|im_end|>\n", "Berlin<|im_end|>\n"]
    runs, before = _runs({"messages": CHAT}, tok, reasoning="train")
    assert runs == ["Paris<|im_end|>\n", "<think>\n\n</think>\n\nBerlin<|im_end|>\n"]
    assert before[1].endswith("<|im_start|>assistant\n")


def test_qwen3_real_reasoning_in_the_last_turn(toks):
    tok = toks("qwen3")
    last = {"role": "assistant", "content": "Berlin", "reasoning_content": "Germany's capital is Berlin."}
    row = convert({"messages": CHAT[:4] + [last]}, "messages")
    thought = "<think>\nGermany's capital is Berlin.\n</think>\n\nBerlin<|im_end|>\n"
    assert _runs(row, tok)[0] == ["Paris<|im_end|>\n", thought]                       # auto: real reasoning trains
    assert _runs(row, tok, reasoning="train")[0] == ["Paris<|im_end|>\n", thought]
    runs, before = _runs(row, tok, reasoning="mask")
    assert runs == ["Paris<|im_end|>\n", "Berlin<|im_end|>\n"]
    assert before[1].endswith("<|im_start|>assistant\n<think>\nGermany's capital is Berlin.\n</think>\n\n")
    # reasoning on the first turn: Qwen3's template drops it once a later user message follows
    first = {"role": "assistant", "content": "Paris", "reasoning_content": "France: Paris."}
    row = convert({"messages": CHAT[:2] + [first] + CHAT[3:]}, "messages")
    assert _runs(row, tok)[0] == ["Paris<|im_end|>\n", "Berlin<|im_end|>\n"]


def test_qwen3_tool_call_trains_and_tool_result_does_not(toks):
    tok = toks("qwen3")
    row = convert(TOOL_ROW, "messages")
    runs, before = _runs(row, tok)
    assert runs == ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n',
                    "18 C in Paris.<|im_end|>\n"]
    assert before[1].endswith('<tool_response>\n{"temp_c": 18}\n</tool_response><|im_end|>\n<|im_start|>assistant\n'
                              "<think>\n\n</think>\n\n")
    assert '"name": "get_weather"' in before[0] and "# Tools" in before[0]           # the schemas are in the prompt
    # a tool call with reasoning, then a new user question: Qwen3 drops that reasoning in the full
    # conversation, so the generation-prompt prefix of the next turn is not a prefix of the text
    messages = json.loads(json.dumps(TOOL_ROW["messages"]))
    messages[2]["reasoning_content"] = "I should look it up."
    messages += [{"role": "user", "content": "Thanks"},
                 {"role": "assistant", "content": "You're welcome.", "reasoning_content": "Polite."}]
    row = convert({"messages": messages, "tools": [WEATHER]}, "messages")
    runs, _ = _runs(row, tok, reasoning="mask")
    assert runs == ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n',
                    "18 C in Paris.<|im_end|>\n", "You're welcome.<|im_end|>\n"]


def test_llama3_1_tool_calls(toks):
    """The shared Llama 3.1 tokenizer carries the plain Llama 3 template, which renders neither tools
    nor tool calls: the row is refused. With the official Llama 3.1 template (as TRL ships it) the
    call's JSON trains and the ipython result does not."""
    tok = toks("llama3_1")
    row = convert(TOOL_ROW, "messages")
    with pytest.raises(UserError, match=r'field "model.chat_template" the chat template does not render tools'):
        tokenize_example(row, tok, "assistant")
    no_tools = {"messages": row["messages"]}
    with pytest.raises(UserError, match=r"does not render message 3 \(assistant\) tool_calls"):
        tokenize_example(no_tools, tok, "assistant")
    import trl

    official = Path(trl.__file__).parent / "chat_templates" / "llama3_1.jinja"
    if not official.is_file():
        pytest.skip("this TRL ships no llama3_1.jinja")
    tok = _tokenizer("llama3_1")                                          # a copy: the fixture stays stock
    tok.chat_template = official.read_text()
    runs, before = _runs(row, tok)
    assert runs == ['{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>', "18 C in Paris.<|eot_id|>"]
    assert before[1].endswith('<|start_header_id|>ipython<|end_header_id|>\n\n"{\\"temp_c\\": 18}"<|eot_id|>'
                              "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_gemma3_refuses_what_its_template_cannot_render(toks):
    tok = toks("gemma3")
    with pytest.raises(UserError, match=r"does not render message 3 \(assistant\) tool_calls"):
        tokenize_example(convert({"messages": TOOL_ROW["messages"]}, "messages"), tok, "assistant")
    tool_turn = CHAT[1:3] + [{"role": "tool", "content": "18"}, {"role": "assistant", "content": "18 C"}]
    with pytest.raises(UserError, match=r'"model.chat_template" the chat template rejects a training row: '
                                        "Conversation roles must alternate"):
        tokenize_example({"messages": tool_turn}, tok, "assistant")
    reasoning = CHAT[:4] + [{"role": "assistant", "content": "Berlin", "reasoning_content": "Easy."}]
    with pytest.raises(UserError, match=r"does not render message 5 \(assistant\) reasoning_content"):
        tokenize_example(convert({"messages": reasoning}, "messages"), tok, "assistant")
