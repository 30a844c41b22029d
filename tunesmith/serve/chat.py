"""`tunesmith chat`: talk to a model, a run or an adapter in the terminal.

Tokens stream as they are generated (transformers' TextIteratorStreamer, `generate` in a thread);
the chat template is applied to the whole conversation, which is kept between turns. Commands:
`/reset` (forget the conversation), `/system TEXT` (set the system prompt and reset), `/exit`
(or end of input, Ctrl-D). Ctrl-C stops the answer being written. With `compare` (`--compare BASE`)
a second model answers every message after the first, each keeping its own conversation.
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Any, TextIO

from .engine import end_ids_of, resolve_target

HELP = "commands: /reset  /system TEXT  /exit  (Ctrl-D exits, Ctrl-C stops an answer)"


def load_chat_model(model_or_run: str | os.PathLike, adapter: str | os.PathLike | None = None,
                    dtype: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer): the base of `model_or_run` with its adapter, or with `adapter` when given."""
    import torch

    from ..adapters.chain import run_output
    from ..core.modelio import load_model, load_peft, load_tokenizer

    base, found = resolve_target(model_or_run)
    model = load_model(base, dtype=getattr(torch, dtype) if dtype else None)
    folders = list(found.values())
    if adapter is not None:
        folders = [run_output(adapter, field="adapter")]
    for folder in folders[:1]:
        model = load_peft(model, folder)
    model.eval()
    return model, load_tokenizer(base)


class _Stop:
    """A StoppingCriteria that stops generation when `flag` is set (Ctrl-C)."""

    def __init__(self) -> None:
        self.flag = threading.Event()

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool, device=input_ids.device)


def reply(model: Any, tokenizer: Any, messages: list[dict], *, max_new_tokens: int = 256, temperature: float = 0.7,
          top_p: float = 0.95, out: TextIO = sys.stdout, stop: _Stop | None = None) -> str:
    """Stream the assistant's answer to `messages` to `out`; return it."""
    import torch
    from transformers import StoppingCriteriaList, TextIteratorStreamer

    from ..data.chat import render_messages

    text = render_messages(messages, tokenizer, add_generation_prompt=True)
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
    end_ids = end_ids_of(model, tokenizer)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else \
        {"do_sample": False}
    stop = stop or _Stop()
    kwargs = dict(**enc, max_new_tokens=max_new_tokens, eos_token_id=end_ids, streamer=streamer,
                  pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end_ids[0],
                  stopping_criteria=StoppingCriteriaList([stop]), **sampling)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            with torch.inference_mode():
                model.generate(**kwargs)
        except BaseException as e:  # noqa: BLE001 - shown by the caller
            failure.append(e)
            streamer.end()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    parts: list[str] = []
    try:
        for piece in streamer:
            parts.append(piece)
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        stop.flag.set()
        parts.extend(streamer)  # let generate finish its step
        out.write(" [stopped]")
    thread.join()
    out.write("\n")
    out.flush()
    if failure:
        raise failure[0]
    return "".join(parts).strip()


def chat_loop(model: Any, tokenizer: Any, *, system: str | None = None, max_new_tokens: int = 256,
              temperature: float = 0.7, top_p: float = 0.95, stdin: TextIO | None = None,
              out: TextIO = sys.stdout, name: str = "model", compare: tuple[Any, Any, str] | None = None) -> int:
    """Read a message per line, answer it, keep the conversation; 0 on /exit or end of input.
    `compare` = (model, tokenizer, name): a second model answers each message too, beside the first."""
    stdin = stdin or sys.stdin
    interactive = stdin.isatty()
    messages: list[dict] = []
    other: list[dict] = []  # the compared model's own conversation

    def start() -> None:
        for conversation in (messages, other):
            conversation.clear()
            if system:
                conversation.append({"role": "system", "content": system})

    start()
    out.write(f"chatting with {name}; {HELP}\n")
    out.flush()
    while True:
        if interactive:
            out.write("you> ")  # written here: input()'s own prompt may go to stderr
            out.flush()
            try:
                line = input()
            except EOFError:
                out.write("\n")
                return 0
            except KeyboardInterrupt:
                out.write("\n")
                continue
        else:
            out.write("you> ")
            out.flush()
            line = stdin.readline()
            if not line:
                out.write("\n")
                return 0
        line = line.strip()
        if not line:
            continue
        if line in ("/exit", "/quit"):
            return 0
        if line == "/reset":
            start()
            out.write("(conversation reset)\n")
            continue
        if line == "/system" or line.startswith("/system "):
            system = line[len("/system"):].strip() or None
            start()
            out.write(f"(system prompt {'set' if system else 'cleared'}; conversation reset)\n")
            continue
        if line.startswith("/") and not line.startswith("//"):
            out.write(f"unknown command {line.split()[0]}; {HELP}\n")
            continue
        text = line[1:] if line.startswith("//") else line
        messages.append({"role": "user", "content": text})
        out.write(f"{name}> ")
        out.flush()
        answer = reply(model, tokenizer, messages, max_new_tokens=max_new_tokens, temperature=temperature,
                       top_p=top_p, out=out)
        messages.append({"role": "assistant", "content": answer})
        if compare is not None:
            other_model, other_tok, other_name = compare
            other.append({"role": "user", "content": text})
            out.write(f"{other_name}> ")
            out.flush()
            other.append({"role": "assistant", "content": reply(
                other_model, other_tok, other, max_new_tokens=max_new_tokens, temperature=temperature,
                top_p=top_p, out=out)})
