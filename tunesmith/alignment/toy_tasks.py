"""Small embedded tasks with answers checked automatically, in every form the stages need.

Five tasks, each short enough for a nano model trained from scratch on the shipped corpus:

| task      | prompt                              | answer  |
|-----------|-------------------------------------|---------|
| add       | What is 3 plus 4?                   | 7       |
| reverse   | Reverse the letters: d k a          | a k d   |
| sort      | Sort the letters: d k a             | a d k   |
| upper     | Write in capitals: fox              | FOX     |
| brackets  | Put the word in brackets: fox       | [fox]   |

Every task has a fixed item space (all digit pairs, all 3-letter triples, a word list). Each
item belongs to the train or the held-out split by a hash of the item itself, so held-out rows
never appear in training data whatever the seeds or row counts.

Forms (TRL 1.16 standard forms, as `tunesmith.data` produces them):
- `instruction_rows`: `{"messages": [user, assistant], "task", "answer"}`
- `preference_rows`: `{"prompt": [user], "chosen": [assistant], "rejected": [assistant], "task"}`
- `kto_rows`: `{"prompt": [user], "completion": [assistant], "label": bool, "task"}`
- `prompt_rows`: `{"prompt": [user], "answer": str, "task"}` (GRPO/RLOO; TRL passes `answer` and
  `task` to reward functions as keyword arguments)

Scoring: `exact_match` (greedy generation with the chat template) and the reward functions
`exact_match_reward` / `format_reward` in TRL's reward-function signature.

Example:
    >>> rows = instruction_rows(["add"], 3, seed=0)
    >>> rows[0]["messages"][0]["content"].startswith("What is")
    True
    >>> exact_match_reward(prompts=None, completions=["7", " 8."], answer=["7", "8"])
    [1.0, 1.0]
"""
from __future__ import annotations

import itertools
import random
import re
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

TASKS = ("add", "reverse", "sort", "upper", "brackets")
HELDOUT_PERCENT = 20  # share of each task's item space reserved for evaluation
LETTERS = "abcdefghijklmnopqrstuvwxyz"
WORDS = ("ant", "apple", "bag", "ball", "bear", "bed", "bee", "bell", "bike", "bird", "boat",
         "bone", "book", "bowl", "box", "bug", "bus", "cake", "car", "cat", "coat", "corn", "cow",
         "crab", "cup", "deer", "desk", "dog", "doll", "door", "drum", "duck", "egg", "fan",
         "farm", "fig", "fish", "fork", "fox", "frog", "gate", "gift", "girl", "goat", "gum",
         "hat", "hen", "hill", "home", "horn", "ink", "jam", "jar", "jet", "key", "king", "kite",
         "lake", "lamp", "leaf", "lion", "log", "map", "mat", "milk", "moon", "mop", "mouse",
         "nest", "net", "nut", "owl", "pan", "park", "pen", "pie", "pig", "pot", "rain", "rat",
         "ring", "road", "rock", "rose", "rug", "sand", "seal", "ship", "shoe", "sky", "snow",
         "sock", "soup", "star", "sun", "swan", "tent", "toy", "train", "tree", "van", "vase",
         "web", "wind", "wing", "wolf", "yard", "zoo")


@dataclass(frozen=True)
class Example:
    """One task item: the user's prompt, the correct answer and a plausible wrong answer."""

    task: str
    prompt: str
    answer: str
    wrong: str


def _add(item: tuple[int, int]) -> Example:
    a, b = item
    wrong = a + b + (1 if (a + b) % 2 == 0 else -1)   # off by one: the typical slip
    return Example("add", f"What is {a} plus {b}?", str(a + b), str(wrong))


def _reverse(item: tuple[str, ...]) -> Example:
    return Example("reverse", "Reverse the letters: " + " ".join(item), " ".join(reversed(item)), " ".join(item))


def _sort(item: tuple[str, ...]) -> Example:
    answer = " ".join(sorted(item))
    wrong = " ".join(item) if " ".join(item) != answer else " ".join(sorted(item, reverse=True))
    return Example("sort", "Sort the letters: " + " ".join(item), answer, wrong)


def _upper(item: str) -> Example:
    return Example("upper", f"Write in capitals: {item}", item.upper(), item)


def _brackets(item: str) -> Example:
    return Example("brackets", f"Put the word in brackets: {item}", f"[{item}]", item)


# task -> (item space, item -> Example)
_SPACES: dict[str, tuple[Callable[[], list], Callable[[Any], Example]]] = {
    "add": (lambda: list(itertools.product(range(10), range(10))), _add),
    "reverse": (lambda: [t for t in itertools.product(LETTERS, repeat=3) if len(set(t)) == 3], _reverse),
    "sort": (lambda: [t for t in itertools.product(LETTERS, repeat=3) if len(set(t)) == 3], _sort),
    "upper": (lambda: list(WORDS), _upper),
    "brackets": (lambda: list(WORDS), _brackets),
}


def is_heldout(task: str, item: Any) -> bool:
    """True when `item` belongs to the held-out split (a stable hash: same answer on every run)."""
    return zlib.crc32(f"{task}|{item!r}".encode()) % 100 < HELDOUT_PERCENT


def _check_tasks(tasks: Iterable[str]) -> list[str]:
    from ..core.errors import UserError

    names = list(tasks)
    for name in names:
        if name not in TASKS:
            raise UserError(f"unknown task {name!r}", field="tasks", fix=f"use some of {', '.join(TASKS)}")
    if not names:
        raise UserError("no tasks given", field="tasks", fix=f"use some of {', '.join(TASKS)}")
    return names


def examples(tasks: Sequence[str] | str, n: int, seed: int = 0, split: str = "train") -> list[Example]:
    """`n` distinct examples spread evenly over `tasks` (round robin), from `split` ("train" or
    "heldout"), in a seeded order. A task whose split has fewer items than its share gives all of them.

    Example:
        >>> [e.answer for e in examples("upper", 2, seed=1)] == [e.answer for e in examples("upper", 2, seed=1)]
        True
    """
    names = _check_tasks([tasks] if isinstance(tasks, str) else tasks)
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    rng = random.Random(seed)
    pools = []
    for name in names:
        space, make = _SPACES[name]
        items = [it for it in space() if is_heldout(name, it) == (split == "heldout")]
        rng.shuffle(items)
        pools.append([make(it) for it in items])
    out: list[Example] = []
    for rank in range(max(len(p) for p in pools)):
        for pool in pools:
            if rank < len(pool) and len(out) < n:
                out.append(pool[rank])
    return out


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def instruction_rows(tasks: Sequence[str] | str, n: int, seed: int = 0, split: str = "train") -> list[dict]:
    """Chat rows for SFT: `{"messages": [user, assistant], "task", "answer"}`."""
    return [{"messages": _user(e.prompt) + _assistant(e.answer), "task": e.task, "answer": e.answer}
            for e in examples(tasks, n, seed, split)]


def preference_rows(tasks: Sequence[str] | str, n: int, seed: int = 0, split: str = "train") -> list[dict]:
    """Pairs for DPO/ORPO/SimPO and reward models: the correct answer is chosen, the wrong one rejected."""
    return [{"prompt": _user(e.prompt), "chosen": _assistant(e.answer), "rejected": _assistant(e.wrong),
             "task": e.task} for e in examples(tasks, n, seed, split)]


def kto_rows(tasks: Sequence[str] | str, n: int, seed: int = 0, split: str = "train") -> list[dict]:
    """Unpaired rows for KTO: each example gives a desirable (label true) and an undesirable row."""
    rows = []
    for e in examples(tasks, n, seed, split):
        rows.append({"prompt": _user(e.prompt), "completion": _assistant(e.answer), "label": True, "task": e.task})
        rows.append({"prompt": _user(e.prompt), "completion": _assistant(e.wrong), "label": False, "task": e.task})
    return rows


def prompt_rows(tasks: Sequence[str] | str, n: int, seed: int = 0, split: str = "train") -> list[dict]:
    """Prompt-only rows for online RL (GRPO/RLOO): `{"prompt": [user], "answer", "task"}`."""
    return [{"prompt": _user(e.prompt), "answer": e.answer, "task": e.task} for e in examples(tasks, n, seed, split)]


# ---- scoring ---------------------------------------------------------------------------------

_END = re.compile(r"<\|im_end\|>|<\|endoftext\|>|</s>|\n")


def normalize(text: str) -> str:
    """The comparison form of an answer: cut at the first end-of-turn token or newline, collapse
    whitespace runs to one space, strip, drop one trailing period. Case is kept (the `upper` task
    depends on it).

    Example:
        >>> normalize("  a  k d.<|im_end|>junk")
        'a k d'
    """
    text = _END.split(text, maxsplit=1)[0]
    text = " ".join(text.split())
    return text[:-1].rstrip() if text.endswith(".") else text


def _completion_text(completion: Any) -> str:
    """A TRL completion (a string, or a conversational list of messages) as plain text."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def _prompt_and_answer(row: dict) -> tuple[list[dict], str]:
    """(prompt messages, expected answer) of a row in any form this module writes."""
    if "messages" in row:
        msgs = row["messages"]
        if not msgs or msgs[-1]["role"] != "assistant":
            raise ValueError("a messages row must end with the assistant's answer")
        return list(msgs[:-1]), row.get("answer", msgs[-1]["content"])
    prompt = row["prompt"] if isinstance(row["prompt"], list) else _user(row["prompt"])
    if "answer" in row:
        return prompt, row["answer"]
    if "chosen" in row:
        return prompt, _completion_text(row["chosen"])
    raise ValueError(f"cannot find the answer in a row with fields {sorted(row)}")


def end_of_turn_ids(tok: Any) -> list[int]:
    """Token ids that end an assistant turn: eos and, when the tokenizer has it, ChatML's <|im_end|>."""
    ids = {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")}
    return sorted(i for i in ids if isinstance(i, int) and i != tok.unk_token_id)


def generate_answers(model: Any, tokenizer: Any, prompts: Sequence[list[dict]], max_new_tokens: int = 8,
                     batch_size: int = 64, sampling: dict[str, Any] | None = None,
                     seed: int | None = None) -> list[str]:
    """Completions of chat `prompts` (the chat template applied by `tunesmith.data.render_messages`,
    left padding, stop at end of turn), decoded without special tokens. Greedy by default;
    `sampling` (temperature, top_p, ...) samples instead, from `seed` when given."""
    import torch

    from ..data.chat import render_messages

    end_ids = end_of_turn_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end_ids[0]
    decoding = {"do_sample": True, **sampling} if sampling else {"do_sample": False}
    texts = [render_messages(p, tokenizer, add_generation_prompt=True) for p in prompts]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    was_training = model.training
    model.eval()
    if seed is not None:
        torch.manual_seed(seed)
    out: list[str] = []
    try:
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(model.device)
            with torch.no_grad():
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=end_ids,
                                     pad_token_id=pad_id, **decoding)
            out += tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def exact_match(model: Any, tokenizer: Any, rows: Sequence[dict], max_new_tokens: int = 8,
                batch_size: int = 64) -> float:
    """Share of `rows` whose greedy completion equals the answer after `normalize`.

    Example:
        exact_match(model, tok, instruction_rows(TASKS, 100, split="heldout"))
        # -> 0.83
    """
    return exact_match_report(model, tokenizer, rows, max_new_tokens, batch_size)["accuracy"]


def exact_match_report(model: Any, tokenizer: Any, rows: Sequence[dict], max_new_tokens: int = 8,
                       batch_size: int = 64) -> dict[str, Any]:
    """`{"accuracy", "by_task": {task: accuracy}, "n", "samples": [first 5 (prompt, answer, output)]}`."""
    pairs = [_prompt_and_answer(r) for r in rows]
    outputs = generate_answers(model, tokenizer, [p for p, _ in pairs], max_new_tokens, batch_size)
    hits = [normalize(o) == normalize(a) for o, (_, a) in zip(outputs, pairs)]
    by_task: dict[str, list[bool]] = {}
    for row, hit in zip(rows, hits):
        by_task.setdefault(row.get("task", "all"), []).append(hit)
    return {"accuracy": sum(hits) / max(len(hits), 1), "n": len(hits),
            "by_task": {t: sum(h) / len(h) for t, h in by_task.items()},
            "samples": [(p[-1]["content"], a, o) for (p, a), o in list(zip(pairs, outputs))[:5]]}


# ---- reward functions (TRL signature) ---------------------------------------------------------

def exact_match_reward(prompts: Any, completions: Sequence[Any], answer: Sequence[str], **kwargs: Any) -> list[float]:
    """1.0 where the completion equals `answer` after `normalize`, else 0.0 (GRPO/RLOO reward function;
    `answer` is the dataset column of `prompt_rows`).

    Example:
        >>> exact_match_reward(None, [[{"role": "assistant", "content": "FOX"}]], answer=["FOX"])
        [1.0]
    """
    return [float(normalize(_completion_text(c)) == normalize(a)) for c, a in zip(completions, answer)]


_SHAPES = {"add": re.compile(r"\d{1,2}"), "reverse": re.compile(r"[a-z] [a-z] [a-z]"),
           "sort": re.compile(r"[a-z] [a-z] [a-z]"), "upper": re.compile(r"[A-Z]+"),
           "brackets": re.compile(r"\[[a-z]+\]")}


def format_reward(prompts: Any, completions: Sequence[Any], task: Sequence[str], **kwargs: Any) -> list[float]:
    """0.5 where the completion has the answer's shape for its task (a number, three letters,
    capitals, a bracketed word) even if wrong, else 0.0: a denser signal to add to exact_match_reward.

    Example:
        >>> format_reward(None, ["12", "[dog]", "dog"], task=["add", "brackets", "brackets"])
        [0.5, 0.5, 0.0]
    """
    return [0.5 if _SHAPES[t].fullmatch(normalize(_completion_text(c))) else 0.0 for c, t in zip(completions, task)]


REWARD_FUNCTIONS: dict[str, Callable[..., list[float]]] = {"exact_match": exact_match_reward,
                                                          "format": format_reward}
__all__ = ["Example", "REWARD_FUNCTIONS", "TASKS", "exact_match", "exact_match_report", "exact_match_reward",
           "end_of_turn_ids", "examples", "format_reward", "generate_answers", "instruction_rows", "is_heldout", "kto_rows",
           "normalize", "preference_rows", "prompt_rows"]
