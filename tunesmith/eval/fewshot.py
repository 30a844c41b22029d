"""Zero/few-shot evaluation of causal LMs by log-likelihood, as lm-evaluation-harness does.

Each row becomes a prompt (the task's template, after k demonstrations) and a set of
continuations: the label verbalizers (" yes"/" no", ...) or, for COPA and ReCoRD, the
candidate answers. The prediction is the continuation with the highest summed
log-probability. `scoring="calibrated"` corrects the model's label bias:

* label tasks: contextual calibration (Zhao et al., 2021) - subtract the label
  log-probabilities the same prompt gets with every input field set to "N/A";
* COPA/ReCoRD: domain-conditional PMI (Holtzman et al., 2021) - subtract each candidate's
  log-probability after only the answer cue (" because", " therefore", the query prefix).

The k demonstrations are drawn once per task with `seed` from the train split and shared by
every row (which is what makes contextual calibration possible). STS-B predicts the
expected score under the softmax over the verbalizers " 0" ... " 5".

preds = predict(model, tokenizer, get_task("superglue", "rte"), rows, demos=train[:2])
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch

from ..adapters.merge import merged_for_inference
from ..core.errors import UserError
from .batching import pad, sorted_batches
from .tasks import Task, train_task

Request = tuple[str, str]  # (context, continuation)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def render(task: Task, row: dict) -> tuple[str, list[str], Any]:
    """(context, continuations, gold) for one row; gold is a continuation index (or the
    ReCoRD answers list, or the STS-B score)."""
    if task.name == "copa":
        cue = " because" if row["question"] == "cause" else " therefore"
        context = row["premise"].strip().rstrip(".") + cue
        return context, [" " + _lower_first(row["choice1"]), " " + _lower_first(row["choice2"])], row["label"]
    if task.name == "record":
        before, _, after = row["query"].partition("@placeholder")
        passage = row["passage"].replace("@highlight\n", "- ")
        return f"{passage}\n\n- {before}".rstrip(" "), [" " * before.endswith(" ") + e + after
                                                        for e in row["entities"]], row["answers"]
    try:
        context = task.template.format(**row)
    except KeyError as e:
        raise UserError(f"{task.title} row has no field \"{e.args[0]}\"", field=e.args[0],
                        fix=f"rows need the fields {', '.join(task.inputs)}") from None
    return context, list(task.verbalizers), row["label"]


def _cue(task: Task, row: dict, context: str) -> str:
    """The domain premise for PMI scoring: the answer cue without the row's content."""
    if task.name == "copa":
        return " because" if row["question"] == "cause" else " therefore"
    return "- " + row["query"].partition("@placeholder")[0].rstrip(" ")


def demonstrations(task: Task, train_rows: Sequence[dict], k: int, seed: int) -> str:
    """k solved examples drawn with `seed`, separated by blank lines (empty when k == 0)."""
    if k == 0:
        return ""
    if len(train_rows) < k:
        raise UserError(f"{task.title}: {k} demonstrations asked but the train split has {len(train_rows)} rows",
                        field="fewshot.k", fix=f"use --fewshot.k {len(train_rows)} or fewer")
    shots = []
    for row in random.Random(seed).sample(list(train_rows), k):
        context, choices, gold = render(task, row)
        if task.name == "record":
            answer = next((c for c, e in zip(choices, row["entities"]) if e in gold), choices[0])
        elif task.kind == "regression":
            answer = choices[min(5, max(0, round(float(gold))))]
        else:
            answer = choices[gold]
        shots.append(context + answer)
    return "\n\n".join(shots) + "\n\n"


def loglikelihood(model: torch.nn.Module, tokenizer: Any, requests: Sequence[Request], *,
                  batch_size: int = 16, max_length: int | None = None) -> list[float]:
    """Summed log-probability of each continuation given its context. Requests that share
    a context and have one-token continuations cost one forward pass together.

    loglikelihood(model, tok, [("The sky is", " blue"), ("The sky is", " green")])
    # -> [-3.1, -7.9]
    """
    limit = max_length or getattr(model.config, "max_position_embeddings", None) or 2048
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    encode = _cached_encoder(tokenizer)
    # one sequence per (context, continuation), or per context when all its continuations are one token
    seqs: list[list[int]] = []
    reads: list[tuple[int, list[int]]] = []  # per request: (sequence id, continuation ids)
    by_context: dict[str, int] = {}
    grouped: dict[str, list[list[int]]] = {}
    for context, cont in requests:
        grouped.setdefault(context, []).append(encode(cont))
    for context, cont in requests:
        ctx_ids, cont_ids = bos + encode(context), encode(cont)
        if not cont_ids:
            raise UserError(f"empty continuation after tokenization: {cont!r}", field="verbalizers")
        if all(len(c) == 1 for c in grouped[context]):
            if context not in by_context:
                by_context[context] = len(seqs)
                seqs.append((ctx_ids + [cont_ids[0]])[-limit:])
            reads.append((by_context[context], cont_ids))
        else:
            reads.append((len(seqs), cont_ids))
            seqs.append((ctx_ids + cont_ids)[-limit:])
    scores_per_seq: dict[int, torch.Tensor] = {}
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    wanted: dict[int, int] = {}
    for seq_id, cont_ids in reads:
        wanted[seq_id] = max(wanted.get(seq_id, 0), len(cont_ids))
    with merged_for_inference(model), torch.inference_mode():  # a PeftModel scores at bare-model cost
        for batch in sorted_batches([len(s) for s in seqs], batch_size):
            inputs = [seqs[i][:-1] for i in batch]
            ids, mask = pad(inputs, pad_id)
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            for row, i in enumerate(batch):
                end = len(inputs[row])
                span = logits[row, end - wanted[i]:end].float()
                scores_per_seq[i] = torch.log_softmax(span, dim=-1).cpu()
    out = []
    for seq_id, cont_ids in reads:
        logp = scores_per_seq[seq_id]
        if len(cont_ids) == 1 and logp.shape[0] == 1:
            out.append(float(logp[0, cont_ids[0]]))
        else:
            tail = logp[-len(cont_ids):]
            out.append(float(tail.gather(1, torch.tensor(cont_ids)[:, None]).sum()))
    return out


def _cached_encoder(tokenizer: Any):
    cache: dict[str, list[int]] = {}

    def encode(text: str) -> list[int]:
        if text not in cache:
            cache[text] = tokenizer(text, add_special_tokens=False)["input_ids"]
        return cache[text]
    return encode


def predict(model: torch.nn.Module, tokenizer: Any, task: Task, rows: Sequence[dict], *,
            demos: Sequence[dict] = (), k: int = 0, seed: int = 1234, scoring: str = "loglik",
            batch_size: int = 16, max_length: int | None = None) -> list[Any]:
    """Predictions for `rows` (label ids; a score for STS-B; the answer text for ReCoRD).

    predict(model, tok, get_task("glue", "sst2"), rows, demos=train, k=4, scoring="calibrated")
    """
    prefix = demonstrations(train_task(task), demos, k, seed)  # AX-b/AX-g: RTE demos; AX: MNLI
    rendered = [render(task, r) for r in rows]
    requests = [(prefix + ctx, c) for ctx, choices, _ in rendered for c in choices]
    flat = loglikelihood(model, tokenizer, requests, batch_size=batch_size, max_length=max_length)
    scores, pos = [], 0
    for _, choices, _ in rendered:
        scores.append(torch.tensor(flat[pos:pos + len(choices)]))
        pos += len(choices)
    if scoring == "calibrated":
        scores = _calibrate(model, tokenizer, task, rows, rendered, scores, prefix, batch_size, max_length)
    elif scoring != "loglik":
        raise UserError(f'unknown scoring "{scoring}"', field="fewshot.scoring", fix="use loglik or calibrated")
    out: list[Any] = []
    for row, s in zip(rows, scores):
        if task.name == "record":
            out.append(row["entities"][int(s.argmax())] if len(s) else "")
        elif task.kind == "regression":
            out.append(float((torch.softmax(s, 0) * torch.arange(len(s))).sum()))
        else:
            out.append(int(s.argmax()))
    return out


def _calibrate(model: torch.nn.Module, tokenizer: Any, task: Task, rows: Sequence[dict],
               rendered: list, scores: list[torch.Tensor], prefix: str, batch_size: int,
               max_length: int | None) -> list[torch.Tensor]:
    if task.kind == "choice":  # domain-conditional PMI: subtract log P(candidate | answer cue)
        requests = [(_cue(task, r, ctx), c) for r, (ctx, choices, _) in zip(rows, rendered) for c in choices]
        flat = loglikelihood(model, tokenizer, requests, batch_size=batch_size, max_length=max_length)
        out, pos = [], 0
        for s in scores:
            out.append(s - torch.tensor(flat[pos:pos + len(s)]))
            pos += len(s)
        return out
    # contextual calibration: the same prompt with content-free ("N/A") fields
    content_free = task.template.format(**{f: "N/A" for f in _fields(task)})
    cf = torch.tensor(loglikelihood(model, tokenizer, [(prefix + content_free, v) for v in task.verbalizers],
                                    batch_size=batch_size, max_length=max_length))
    cf = torch.log_softmax(cf, 0)
    return [torch.log_softmax(s, 0) - cf for s in scores]


def _fields(task: Task) -> list[str]:
    import string
    return [name for _, name, _, _ in string.Formatter().parse(task.template) if name]
