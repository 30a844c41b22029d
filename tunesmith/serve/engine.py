"""The generation engine behind `tunesmith serve`: one worker thread owns the model and runs a
dynamic-batching loop over a bounded queue.

- `resolve_target(MODEL_OR_RUN)`: a model folder, a run directory (its trained model) or an adapter
  folder (its recorded base, plus the adapter registered under the run's / folder's name);
- `Engine.submit(job)` puts a `Job` on the queue (`QueueFull` when it is full: the server's 503);
  the worker takes the oldest job and every queued job that can share its `generate` call (same
  model or adapter, same sampling: greedy, or the same temperature/top_p/seed), up to `max_batch`
  rows (a request with `n` choices is `n` rows), left-pads them into one batch and calls
  `model.generate` once. A per-step hook (a StoppingCriteria, which sees every new token of every
  row) streams each row's new text to its request, and stops a row on its end-of-turn token, a stop
  string, its own `max_tokens`, its deadline or when its client went away (`Job.cancel()`); a
  stopped row only pads while the others finish. Streaming and non-streaming requests batch alike.
- adapters: PEFT multi-adapter on one base; each adapter is loaded once (`load_peft` for the first,
  `PeftModel.load_adapter` after, both on the worker thread), a batch selects its adapter with
  `set_adapter`, and the base runs inside `with model.disable_adapter():`.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import UserError

RUN_FOLDER_NAMES = ("model", "adapter", "merged")


class QueueFull(Exception):
    """The request queue is full (the server answers 503)."""


class EngineError(Exception):
    """A request the engine refuses: `status` (HTTP), `code` (OpenAI error code), `param`."""

    def __init__(self, message: str, status: int = 400, code: str | None = None, param: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.code, self.param, self.type = status, code, param, type


def served_name(folder: Path) -> str:
    """The name a model folder answers to: its folder name, or its run directory's name for a run's
    `model/` / `adapter/` / `merged/`."""
    folder = Path(folder)
    if folder.name in RUN_FOLDER_NAMES and folder.parent.name:
        return folder.parent.name
    return folder.name


def resolve_target(model_or_run: str | os.PathLike) -> tuple[Path, dict[str, Path]]:
    """(base model folder, {adapter name: adapter folder}) for a model folder, a run directory or an
    adapter folder (its recorded base + the adapter, named after the run or folder)."""
    from ..adapters.artifacts import read_record, resolve_base
    from ..adapters.chain import is_adapter_folder, run_output

    p = run_output(model_or_run, field="model")
    if is_adapter_folder(p):
        record = read_record(p)
        return Path(resolve_base(p, record, None)), {served_name(p): p}
    if not (p / "config.json").is_file():
        raise UserError("not a model folder, run directory or adapter folder", file=p,
                        fix="point at a folder with config.json, a run directory, or an adapter folder")
    return p, {}


def end_ids_of(model: Any, tokenizer: Any) -> list[int]:
    """End-of-turn ids: the generation config's eos ids, the tokenizer's eos and ChatML's <|im_end|>."""
    from ..alignment.toy_tasks import end_of_turn_ids

    ids = set(end_of_turn_ids(tokenizer))
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update([eos] if isinstance(eos, int) else list(eos or []))
    return sorted(i for i in ids if isinstance(i, int))


@dataclass
class Row:
    """One choice of a job: its tokens, the text already sent, how it finished."""
    job: Job
    index: int
    tokens: list[int] = field(default_factory=list)
    sent: str = ""
    finish_reason: str | None = None


@dataclass
class Job:
    """One request: prompt token ids, sampling, limits, and where its events go.

    Events (put on `events`, an asyncio.Queue of the server's loop, or read with `wait()`):
    ("delta", index, text), ("finish", index, reason), ("done", usage dict), ("error", EngineError).
    """
    model: str
    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    n: int = 1
    stop: list[str] = field(default_factory=list)
    timeout: float = 300.0
    loop: asyncio.AbstractEventLoop | None = None
    events: Any = None
    created: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.timeout
        self.cancelled = threading.Event()
        self.finished = threading.Event()
        self.rows = [Row(self, i) for i in range(self.n)]
        if self.events is None:
            self.events = asyncio.Queue() if self.loop is not None else queue.Queue()

    @property
    def greedy(self) -> bool:
        return self.temperature <= 1e-5

    def batch_key(self) -> tuple:
        """Jobs with equal keys can share one generate call."""
        sampling = ("greedy",) if self.greedy else ("sample", float(self.temperature), float(self.top_p), self.seed)
        return (self.model, *sampling)

    def cancel(self) -> None:
        self.cancelled.set()

    def emit(self, event: tuple) -> None:
        if self.loop is not None:
            try:
                self.loop.call_soon_threadsafe(self.events.put_nowait, event)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                self.cancel()
        else:
            self.events.put(event)
        if event[0] in ("done", "error"):
            self.finished.set()

    def wait(self, timeout: float | None = None) -> dict:
        """Block until done (a job submitted without a loop): {"choices": [(text, reason)], "usage": ...}."""
        texts, reasons = [""] * self.n, [None] * self.n
        while True:
            ev = self.events.get(timeout=timeout)
            if ev[0] == "delta":
                texts[ev[1]] += ev[2]
            elif ev[0] == "finish":
                reasons[ev[1]] = ev[2]
            elif ev[0] == "error":
                raise ev[1]
            else:
                return {"choices": list(zip(texts, reasons)), "usage": ev[1]}


class _Control:
    """Work for the worker thread that is not generation (loading or removing an adapter)."""

    def __init__(self, fn: Callable[[], Any]):
        self.fn, self.done, self.result, self.error = fn, threading.Event(), None, None
        self.cancelled = threading.Event()


class Metrics:
    """Counters for /metrics (Prometheus text format)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.tokens_generated = 0
        self.prompt_tokens = 0
        self.latency_sum = 0.0
        self.latency_count = 0
        self.batches = 0
        self.batch_rows = 0

    def request(self, endpoint: str, status: int, latency: float | None = None) -> None:
        with self.lock:
            self.requests[(endpoint, status)] = self.requests.get((endpoint, status), 0) + 1
            if latency is not None:
                self.latency_sum += latency
                self.latency_count += 1

    def render(self, queue_depth: int, models: list[str]) -> str:
        with self.lock:
            lines = ["# HELP tunesmith_requests_total HTTP requests by endpoint and status.",
                     "# TYPE tunesmith_requests_total counter"]
            lines += [f'tunesmith_requests_total{{endpoint="{e}",status="{s}"}} {n}'
                      for (e, s), n in sorted(self.requests.items())]
            if not self.requests:
                lines.append("tunesmith_requests_total 0")
            lines += ["# HELP tunesmith_tokens_generated_total Completion tokens generated.",
                      "# TYPE tunesmith_tokens_generated_total counter",
                      f"tunesmith_tokens_generated_total {self.tokens_generated}",
                      "# HELP tunesmith_prompt_tokens_total Prompt tokens processed.",
                      "# TYPE tunesmith_prompt_tokens_total counter",
                      f"tunesmith_prompt_tokens_total {self.prompt_tokens}",
                      "# HELP tunesmith_queue_depth Requests waiting for the worker.",
                      "# TYPE tunesmith_queue_depth gauge",
                      f"tunesmith_queue_depth {queue_depth}",
                      "# HELP tunesmith_request_latency_seconds Time from request to last token (completions).",
                      "# TYPE tunesmith_request_latency_seconds summary",
                      f"tunesmith_request_latency_seconds_sum {self.latency_sum:.6f}",
                      f"tunesmith_request_latency_seconds_count {self.latency_count}",
                      "# HELP tunesmith_batch_rows Rows per generate call.",
                      "# TYPE tunesmith_batch_rows summary",
                      f"tunesmith_batch_rows_sum {self.batch_rows}",
                      f"tunesmith_batch_rows_count {self.batches}",
                      "# HELP tunesmith_models Models and adapters served.",
                      "# TYPE tunesmith_models gauge",
                      f"tunesmith_models {len(models)}"]
        return "\n".join(lines) + "\n"


class _RowHook:
    """Called by `generate` after every step (as a StoppingCriteria): hands each row's new token to
    its request and says which rows are done."""

    def __init__(self, engine: Engine, rows: list[Row]):
        self.engine, self.rows = engine, rows
        self.stop_hold = {id(r.job): max((len(s) for s in r.job.stop), default=1) - 1 for r in rows}

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        eng, now = self.engine, time.monotonic()
        new = input_ids[:, -1].tolist()
        for row, tok in zip(self.rows, new):
            if row.finish_reason is not None:
                continue
            job = row.job
            if job.cancelled.is_set():
                self._finish(row, "cancelled")
            elif tok in eng.end_ids:
                self._finish(row, "stop")
            else:
                row.tokens.append(tok)
                with eng.metrics.lock:
                    eng.metrics.tokens_generated += 1
                self._advance(row, final=len(row.tokens) >= job.max_tokens or now > job.deadline)
        return torch.tensor([r.finish_reason is not None for r in self.rows], dtype=torch.bool,
                            device=input_ids.device)

    def _advance(self, row: Row, final: bool) -> None:
        text = self.engine.decode(row.tokens)
        job = row.job
        for s in job.stop:
            at = text.find(s, max(0, len(row.sent) - len(s)))
            if at >= 0:
                self._send(row, text[:at])
                self._finish(row, "stop")
                return
        if final:
            self._send(row, text)
            self._finish(row, "length")
            return
        hold = self.stop_hold[id(job)] if job.stop else 0
        safe = text[:len(text) - hold] if hold else text
        while safe.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for its next bytes
            safe = safe[:-1]
        self._send(row, safe)

    @staticmethod
    def _send(row: Row, text: str) -> None:
        if len(text) > len(row.sent) and text.startswith(row.sent):
            row.job.emit(("delta", row.index, text[len(row.sent):]))
            row.sent = text

    def _finish(self, row: Row, reason: str) -> None:
        if reason == "stop" and not row.job.stop:  # an end-of-turn token: flush held-back text
            self._send(row, self.engine.decode(row.tokens))
        elif reason == "stop":
            text = self.engine.decode(row.tokens)
            if not any(s in text for s in row.job.stop):
                self._send(row, text)
        row.finish_reason = reason
        row.job.emit(("finish", row.index, reason))


class Engine:
    """A model (and its adapters) served by one worker thread; see the module docstring.

    engine = Engine.load("runs/sft")            # or a model folder / an adapter folder
    engine.start()
    job = engine.submit(Job(model=engine.base_name, prompt_ids=ids, max_tokens=16, temperature=0))
    print(job.wait())
    """

    def __init__(self, model: Any, tokenizer: Any, base_name: str, *, max_batch: int = 16, max_queue: int = 64,
                 batch_wait: float = 0.005, device: str = "cpu"):
        self.model, self.tokenizer, self.base_name = model, tokenizer, base_name
        self.adapters: dict[str, Path] = {}
        self.max_batch, self.batch_wait, self.device = max_batch, batch_wait, device
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.pending: deque = deque()
        self.metrics = Metrics()
        self.end_ids = end_ids_of(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.end_ids[0]
        self.context = getattr(model.config, "max_position_embeddings", None)
        self.tok_lock = threading.Lock()  # the fast tokenizer is not safe to call from several threads
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.created = int(time.time())
        model.eval()

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, model_or_run: str | os.PathLike, adapters: dict[str, str | os.PathLike] | None = None, *,
             name: str | None = None, dtype: str | None = None, device: str = "cpu", **kwargs: Any) -> Engine:
        """Load the base of `model_or_run` (`core.modelio.load_model`) and its adapters."""
        import torch

        from ..core.modelio import load_model, load_tokenizer

        base, found = resolve_target(model_or_run)
        torch_dtype = getattr(torch, dtype) if dtype else None
        model = load_model(base, dtype=torch_dtype)
        if device != "cpu":
            model.to(device)
        tok = load_tokenizer(base)
        engine = cls(model, tok, name or served_name(base), device=device, **kwargs)
        for adapter_name, path in {**found, **(adapters or {})}.items():
            engine._load_adapter(adapter_name, path)
        return engine

    @property
    def models(self) -> list[str]:
        return [self.base_name, *self.adapters]

    def _load_adapter(self, name: str, path: str | os.PathLike) -> str:
        """Load the adapter at `path` (an adapter folder or a run directory) as `name`. Worker thread
        (or before `start`) only."""
        from peft import PeftModel

        from ..adapters.chain import is_adapter_folder, run_output
        from ..core.modelio import check_safetensors, load_peft

        if not name:
            raise EngineError("an adapter needs a name", param="name")
        if name in self.models:
            raise EngineError(f"model {name!r} is already served", param="name", code="adapter_exists", status=409)
        try:
            p = run_output(path, field="adapter")
        except UserError as e:
            raise EngineError(str(e), param="path", code="adapter_not_found") from None
        if not is_adapter_folder(p):
            raise EngineError(f"not an adapter folder (no adapter_config.json): {p}", param="path",
                              code="adapter_not_found")
        self._check_base(p)
        try:
            if isinstance(self.model, PeftModel):
                if (p / "adapter_model.safetensors").is_file():
                    check_safetensors(p / "adapter_model.safetensors")
                else:
                    raise EngineError(f"holds no adapter_model.safetensors: {p}", param="path")
                self.model.load_adapter(str(p), adapter_name=name, is_trainable=False)
            else:
                self.model = load_peft(self.model, p, adapter_name=name)
        except UserError as e:
            raise EngineError(str(e), param="path") from None
        self.model.eval()
        self.adapters[name] = p
        return name

    def _check_base(self, adapter: Path) -> None:
        """Warn when the adapter records another base than the one served."""
        from ..adapters.artifacts import read_record

        base = read_record(adapter).get("base")
        served = getattr(self.model, "name_or_path", None) or getattr(
            getattr(self.model, "config", None), "_name_or_path", None)
        if base and served and Path(base).exists() and Path(served).exists() \
                and Path(base).resolve() != Path(served).resolve():
            print(f"warning: adapter {adapter} was trained on {base}, served base is {served}", file=sys.stderr)

    def add_adapter(self, name: str, path: str | os.PathLike, timeout: float = 600.0) -> str:
        """Load an adapter while serving (on the worker thread, between batches)."""
        if self._thread is None:
            return self._load_adapter(name, path)
        ctl = _Control(lambda: self._load_adapter(name, path))
        self.pending_control(ctl)
        if not ctl.done.wait(timeout):
            raise EngineError("loading the adapter timed out", status=504, type="timeout")
        if ctl.error is not None:
            raise ctl.error
        return ctl.result

    def remove_adapter(self, name: str, timeout: float = 600.0) -> None:
        """Unload an adapter while serving (on the worker thread, between batches); its requests still
        queued then answer 404 as for any unknown model."""
        def remove() -> None:
            if self.adapters.pop(name, None) is None:
                return
            if self.adapters:
                self.model.delete_adapter(name)
            else:  # PEFT's delete leaves the last adapter active (disable_adapter then fails): unwrap the base
                self.model = self.model.unload()
                self.model.eval()
        if self._thread is None:
            return remove()
        ctl = _Control(remove)
        self.pending_control(ctl)
        if not ctl.done.wait(timeout):
            raise EngineError("unloading the adapter timed out", status=504, type="timeout")
        if ctl.error is not None:
            raise ctl.error

    def pending_control(self, ctl: _Control) -> None:
        try:
            self.queue.put(ctl, timeout=5)
        except queue.Full:
            raise QueueFull() from None

    # -- requests ----------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        with self.tok_lock:
            return self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        with self.tok_lock:
            return self.tokenizer.decode(ids, skip_special_tokens=True)

    def render_chat(self, messages: list[dict]) -> list[int]:
        from ..data.chat import render_messages

        text = render_messages(messages, self.tokenizer, add_generation_prompt=True)
        return self.encode(text)

    def check_length(self, prompt_len: int, max_tokens: int | None, default: int) -> int:
        """The max_tokens to use; EngineError (400) when the prompt (plus max_tokens) does not fit."""
        if prompt_len == 0:
            raise EngineError("the prompt is empty", param="messages")
        if self.context is None:
            return max_tokens or default
        if prompt_len >= self.context:
            raise EngineError(f"this model's maximum context length is {self.context} tokens; the prompt has "
                              f"{prompt_len}", code="context_length_exceeded", param="messages")
        if max_tokens is None:
            return max(1, min(default, self.context - prompt_len))
        if prompt_len + max_tokens > self.context:
            raise EngineError(f"this model's maximum context length is {self.context} tokens; you requested "
                              f"{prompt_len + max_tokens} ({prompt_len} in the prompt, {max_tokens} for the "
                              "completion)", code="context_length_exceeded", param="max_tokens")
        return max_tokens

    def submit(self, job: Job) -> Job:
        if job.model not in self.models:
            raise EngineError(f"the model {job.model!r} does not exist; served: {', '.join(self.models)}",
                              status=404, code="model_not_found", param="model")
        if job.n > self.max_batch:
            raise EngineError(f"n is at most {self.max_batch}", param="n")
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            raise QueueFull() from None
        with self.metrics.lock:
            self.metrics.prompt_tokens += len(job.prompt_ids) * job.n
        return job

    @property
    def queue_depth(self) -> int:
        return self.queue.qsize() + len(self.pending)

    # -- the worker --------------------------------------------------------------------------
    def start(self) -> Engine:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="tunesmith-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        while True:  # whatever is left gets an answer
            item = self.pending.popleft() if self.pending else None
            if item is None:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
            gone = EngineError("the server is shutting down", status=503, code="shutting_down", type="server_error")
            if isinstance(item, Job):
                item.emit(("error", gone))
            else:
                item.error = gone
                item.done.set()

    def _next(self, timeout: float) -> Any:
        if self.pending:
            return self.pending.popleft()
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _collect(self, first: Job) -> list[Job]:
        """`first` and every waiting job that can share its generate call (up to max_batch rows);
        the others wait in `pending`, in order."""
        batch, rows, key = [first], first.n, first.batch_key()
        deadline = time.monotonic() + self.batch_wait
        kept: deque = deque()
        while self.pending:
            job = self.pending.popleft()
            if isinstance(job, Job) and job.batch_key() == key and rows + job.n <= self.max_batch:
                batch.append(job)
                rows += job.n
            else:
                kept.append(job)
        while rows < self.max_batch:
            try:
                job = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if isinstance(job, Job) and job.batch_key() == key and rows + job.n <= self.max_batch:
                batch.append(job)
                rows += job.n
            else:
                kept.append(job)
        self.pending.extend(kept)
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._next(0.1)
            if item is None:
                continue
            if isinstance(item, _Control):
                try:
                    item.result = item.fn()
                except Exception as e:  # noqa: BLE001 - handed to the caller
                    item.error = e if isinstance(e, EngineError) else EngineError(str(e), status=500,
                                                                                    type="server_error")
                item.done.set()
                continue
            batch = [j for j in self._collect(item) if self._alive(j)]
            if batch:
                try:
                    self._generate(batch)
                except Exception as e:  # noqa: BLE001 - every request of the batch gets the error
                    for job in batch:
                        if not job.finished.is_set():
                            job.emit(("error", EngineError(f"generation failed: {e}", status=500,
                                                           type="server_error")))

    def _alive(self, job: Job) -> bool:
        if job.model not in self.models:  # its adapter was removed while the request waited
            job.emit(("error", EngineError(f"the model {job.model!r} does not exist", status=404,
                                           code="model_not_found", param="model")))
            return False
        if job.cancelled.is_set():
            job.emit(("error", EngineError("cancelled", status=499, code="cancelled")))
            return False
        if time.monotonic() > job.deadline:
            job.emit(("error", EngineError("the request timed out in the queue", status=504, code="timeout",
                                           type="timeout")))
            return False
        return True

    def _adapter_context(self, name: str):
        from peft import PeftModel

        if not isinstance(self.model, PeftModel):
            return nullcontext()
        if name == self.base_name:
            return self.model.disable_adapter()
        self.model.set_adapter(name)
        return nullcontext()

    def _generate(self, batch: list[Job]) -> None:
        import torch
        from transformers import StoppingCriteriaList

        rows = [row for job in batch for row in job.rows]
        prompts = [row.job.prompt_ids for row in rows]
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        first = batch[0]
        sampling = {"do_sample": False} if first.greedy else {"do_sample": True, "temperature": first.temperature,
                                                              "top_p": first.top_p, "top_k": 0}
        if first.seed is not None and not first.greedy:
            torch.manual_seed(first.seed)
        hook = _RowHook(self, rows)
        with self.metrics.lock:
            self.metrics.batches += 1
            self.metrics.batch_rows += len(rows)
        with self._adapter_context(first.model), torch.inference_mode():
            self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max(j.max_tokens for j in batch),
                                eos_token_id=self.end_ids, pad_token_id=self.pad_id,
                                stopping_criteria=StoppingCriteriaList([hook]), **sampling)
        for row in rows:
            if row.finish_reason is None:  # generate stopped at max_new_tokens
                hook._send(row, self.decode(row.tokens))
                hook._finish(row, "length")
        for job in batch:
            completion = sum(len(r.tokens) for r in job.rows)
            job.emit(("done", {"prompt_tokens": len(job.prompt_ids), "completion_tokens": completion,
                               "total_tokens": len(job.prompt_ids) + completion}))


_ids = itertools.count()


def new_id(prefix: str) -> str:
    return f"{prefix}-{os.getpid():x}{int(time.time() * 1000):x}{next(_ids):x}"
