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

Tokenization and truncation mirror lm-evaluation-harness 0.4 (`HFLM`, lm_eval/models/
huggingface.py; `TemplateLM._encode_pair`, lm_eval/api/model.py), so per-request
log-likelihoods match lm-eval's on the same model and prompts: a BOS only where the tokenizer
adds one (`add_bos="auto"`), the context's trailing whitespace moved into the continuation, and
the model fed the last `max_length` tokens of context + continuation minus the final one.

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
                  batch_size: int = 16, max_length: int | None = None,
                  add_bos: bool | str = "auto") -> list[float]:
    """Summed log-probability of each continuation given its context. Requests whose model
    inputs are the same (one-token continuations of one context) cost one forward pass together.

    Tokens and truncation follow lm-evaluation-harness's HFLM, so the numbers are the ones
    lm-eval reports for the same model and prompts: the context is encoded as the tokenizer
    encodes text (`add_bos="auto"`: a BOS only if the tokenizer prepends one; True/False force
    it), trailing whitespace of the context moves to the continuation, the continuation's tokens
    are the tail of the joint encoding, and the model sees the last `max_length` tokens of
    context + continuation minus its final token.

    loglikelihood(model, tok, [("The sky is", " blue"), ("The sky is", " green")])
    # -> [-3.1, -7.9]
    """
    return [lp for lp, _ in loglikelihood_greedy(model, tokenizer, requests, batch_size=batch_size,
                                                 max_length=max_length, add_bos=add_bos)]


def loglikelihood_greedy(model: torch.nn.Module, tokenizer: Any, requests: Sequence[Request], *,
                         batch_size: int = 16, max_length: int | None = None,
                         add_bos: bool | str = "auto") -> list[tuple[float, bool]]:
    """(log-probability, is_greedy) per request, as lm-eval's `loglikelihood` returns them:
    is_greedy is True when every continuation token is the model's argmax at its position."""
    limit = max_length or getattr(model.config, "max_position_embeddings", None) or 2048
    encode_pair = _pair_encoder(tokenizer, add_bos)
    inputs: list[tuple[int, ...]] = []  # distinct model inputs
    input_id: dict[tuple[int, ...], int] = {}
    reads: list[tuple[int, list[int]]] = []  # per request: (input id, continuation ids)
    for context, cont in requests:
        ctx_ids, cont_ids = encode_pair(context, cont)
        if not cont_ids:
            raise UserError(f"empty continuation after tokenization: {cont!r}", field="verbalizers")
        if len(cont_ids) > limit:
            raise UserError(f"a continuation of {len(cont_ids)} tokens does not fit max_length {limit}",
                            field="fewshot.max_length", fix=f"use --fewshot.max_length {len(cont_ids) + 1} or more")
        # lm-eval (huggingface.py, _loglikelihood_tokens): (context_enc + continuation_enc)[-(max_length + 1):][:-1]
        fed = tuple((ctx_ids + cont_ids)[-(limit + 1):][:-1])
        if fed not in input_id:
            input_id[fed] = len(inputs)
            inputs.append(fed)
        reads.append((input_id[fed], cont_ids))
    wanted = [0] * len(inputs)  # continuation positions to keep per input: its longest continuation
    for i, cont_ids in reads:
        wanted[i] = max(wanted[i], len(cont_ids))
    logps: dict[int, torch.Tensor] = {}
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    keep = _keeps_positions(model)
    with merged_for_inference(model), torch.inference_mode():  # a PeftModel scores at bare-model cost
        for batch in sorted_batches([len(s) for s in inputs], batch_size):
            ids, mask = pad([inputs[i] for i in batch], pad_id)
            ends = [len(inputs[i]) for i in batch]  # the logits at the last len(cont) positions predict cont
            logits, ends, keep = _continuation_logits(model, ids.to(device), mask.to(device), ends,
                                                      max(wanted[i] for i in batch), keep)
            for row, i in enumerate(batch):
                logps[i] = torch.log_softmax(logits[row, ends[row] - wanted[i]:ends[row]].float(), dim=-1).cpu()
    out = []
    for i, cont_ids in reads:
        tail = logps[i][-len(cont_ids):]
        target = torch.tensor(cont_ids)
        out.append((float(tail.gather(1, target[:, None]).sum()), bool((tail.argmax(-1) == target).all())))
    return out


def _keeps_positions(model: torch.nn.Module) -> bool:
    """Whether `model` takes HF's `logits_to_keep` as a per-row tensor of positions (transformers 5's
    `slice_logits_to_keep`): then only the continuation positions go through the LM head. PEFT
    prompt learning puts virtual tokens in front, so positions shift: the whole sequence then."""
    import inspect

    from ..core.device import prompt_learning

    if prompt_learning(model):
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def _continuation_logits(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, ends: list[int],
                         width: int, keep: bool) -> tuple[torch.Tensor, list[int], bool]:
    """Logits [rows, positions, vocab], each row's end in them, and whether the next batch should
    try `keep` again: with `keep`, only the last `width` positions before each row's end (its longest
    continuation) go through the LM head, not [rows, sequence, vocab] (a 128k vocabulary at 16 x
    2,048 tokens is 16 GiB of fp32 logits); a model whose forward does not return them so gets the
    whole sequence, from then on."""
    if keep:
        last = torch.tensor(ends, device=ids.device)[:, None]
        positions = (last - width + torch.arange(width, device=ids.device)).clamp(min=0)
        try:
            logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=positions).logits
        except (TypeError, IndexError, RuntimeError):
            logits = None
        if logits is not None and tuple(logits.shape[:2]) == (len(ends), width):
            return logits, [width] * len(ends), True
    return model(input_ids=ids, attention_mask=mask).logits, ends, False


def _pair_encoder(tokenizer: Any, add_bos: bool | str):
    """`encode_pair(context, continuation) -> (context ids, continuation ids)`, as lm-eval's
    `TemplateLM._encode_pair` + `HFLM.tok_encode` with `add_bos_token` left to the tokenizer."""
    if add_bos == "auto":  # the special tokens the tokenizer puts in front of text (lm-eval: add_special_tokens default)
        probe = "a"
        full = tokenizer(probe)["input_ids"]
        plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
        prefix = next((full[:at] for at in range(len(full) - len(plain) + 1) if full[at:at + len(plain)] == plain), [])
    elif add_bos is True:
        if tokenizer.bos_token_id is None:
            raise UserError("fewshot.add_bos is true but the tokenizer has no BOS token", field="fewshot.add_bos",
                            fix="use --fewshot.add_bos auto (or false)")
        prefix = [tokenizer.bos_token_id]
    elif add_bos is False:
        prefix = []
    else:
        raise UserError(f"unknown add_bos {add_bos!r}", field="fewshot.add_bos", fix="use auto, true or false")
    # lm-eval tok_encode: no special tokens for a string that already starts with the BOS text
    marker = tokenizer.decode(prefix) if prefix else None
    # lm-eval prefix_token_id: what an empty context becomes
    empty_context = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    cache: dict[str, list[int]] = {}

    def plain_ids(text: str, keep: bool = True) -> list[int]:
        if text in cache:
            return cache[text]
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if keep:  # contexts and continuations repeat; their concatenations do not
            cache[text] = ids
        return ids

    def encode(text: str, keep: bool = True) -> list[int]:
        ids = plain_ids(text, keep)
        return ids if marker is None or text.startswith(marker) else prefix + ids

    def encode_pair(context: str, cont: str) -> tuple[list[int], list[int]]:
        if not context.strip() and empty_context is None:
            raise UserError("an empty context needs a BOS or EOS token to stand for it; the tokenizer has neither")
        if context == "":  # lm-eval TemplateLM.loglikelihood: BOS (else EOS) stands for the empty context
            cont_ids = plain_ids(cont)
            return (cont_ids[:1], cont_ids[1:]) if cont_ids[:1] == [empty_context] else ([empty_context], cont_ids)
        spaces = len(context) - len(context.rstrip())  # trailing whitespace belongs to the continuation
        if spaces:
            context, cont = context[:-spaces], context[-spaces:] + cont
        ctx_ids = encode(context)
        cont_ids = encode(context + cont, keep=False)[len(ctx_ids):]  # the joint encoding's tail: merges across the seam stay
        return ctx_ids or [empty_context], cont_ids  # a whitespace-only context: as an empty one
    return encode_pair


def predict(model: torch.nn.Module, tokenizer: Any, task: Task, rows: Sequence[dict], *,
            demos: Sequence[dict] = (), k: int = 0, seed: int = 1234, scoring: str = "loglik",
            batch_size: int = 16, max_length: int | None = None, add_bos: bool | str = "auto") -> list[Any]:
    """Predictions for `rows` (label ids; a score for STS-B; the answer text for ReCoRD).

    predict(model, tok, get_task("glue", "sst2"), rows, demos=train, k=4, scoring="calibrated")
    """
    prefix = demonstrations(train_task(task), demos, k, seed)  # AX-b/AX-g: RTE demos; AX: MNLI
    rendered = [render(task, r) for r in rows]
    requests = [(prefix + ctx, c) for ctx, choices, _ in rendered for c in choices]
    flat = loglikelihood(model, tokenizer, requests, batch_size=batch_size, max_length=max_length, add_bos=add_bos)
    scores, pos = [], 0
    for _, choices, _ in rendered:
        scores.append(torch.tensor(flat[pos:pos + len(choices)]))
        pos += len(choices)
    if scoring == "calibrated":
        scores = _calibrate(model, tokenizer, task, rows, rendered, scores, prefix, batch_size, max_length, add_bos)
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
               max_length: int | None, add_bos: bool | str = "auto") -> list[torch.Tensor]:
    if task.kind == "choice":  # domain-conditional PMI: subtract log P(candidate | answer cue)
        requests = [(_cue(task, r, ctx), c) for r, (ctx, choices, _) in zip(rows, rendered) for c in choices]
        flat = loglikelihood(model, tokenizer, requests, batch_size=batch_size, max_length=max_length,
                             add_bos=add_bos)
        out, pos = [], 0
        for s in scores:
            out.append(s - torch.tensor(flat[pos:pos + len(s)]))
            pos += len(s)
        return out
    # contextual calibration: the same prompt with content-free ("N/A") fields
    content_free = task.template.format(**{f: "N/A" for f in _fields(task)})
    cf = torch.tensor(loglikelihood(model, tokenizer, [(prefix + content_free, v) for v in task.verbalizers],
                                    batch_size=batch_size, max_length=max_length, add_bos=add_bos))
    cf = torch.log_softmax(cf, 0)
    return [torch.log_softmax(s, 0) - cf for s in scores]


def _fields(task: Task) -> list[str]:
    import string
    return [name for _, name, _, _ in string.Formatter().parse(task.template) if name]
