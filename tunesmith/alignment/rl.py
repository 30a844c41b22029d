"""Online RL (RLHF) with TRL's GRPO or RLOO trainers: the policy samples a group of completions
per prompt, reward functions and/or reward models score them, the policy moves toward the
better ones while a KL term (coefficient `rl.beta`, logged as `kl`) holds it near the reference
(the base with the adapter switched off). TRL 1.16 has no PPO trainer; GRPO and RLOO are the
online methods offered.

Rewards come from `rewards.functions` ("module:function" import strings, or the built-in names
`exact_match` and `format` of the embedded tasks), from `rewards.models` (folders written by
`tunesmith reward`, or any one-output sequence-classification model), and, through the Python
API, from callables. Every function is called as `f(prompts, completions, **columns)` (TRL's
signature) and must return one float per completion; one that raises or returns something else
stops the run with a UserError naming it.

    import tunesmith as ts
    result = ts.rlhf(model={"path": "runs/sft/model"}, tasks={"names": ["add"]},
                     rewards={"functions": ["exact_match", "format"]}, rl={"method": "grpo"})
    print(result.metrics["before/mean_reward"], result.metrics["after/mean_reward"])
"""
from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import math
import os
import sys
from types import SimpleNamespace
from typing import Any, Callable, Literal, Sequence

import torch
from pydantic import Field
from ..adapters import AdapterConfig
from ..core.config import Section, coerce
from ..core.errors import UserError
from ..core.result import StageResult
from ..core.rundir import RunDir
from ..core.train_config import RunSection, TrainSection
from ..core.trainer_args import batch_layout, training_kwargs, world_size
from ..data import DataPrepConfig, render_messages
from . import toy_tasks as task_lib
from ..lifecycle import Training, run_stage
from ..adapters.chain import run_output
from .common import ModelSection, load_policy, load_tokenizer
from .stage_data import TasksSection, stage_data
from .toy_tasks import end_of_turn_ids
from ..hub.config import PushConfig

RewardFunc = Callable[..., list[float]]


class GenerationSection(Section):
    """How the policy samples completions during training and held-out evaluation."""

    num_generations: int = Field(4, ge=2, description="completions per prompt (the group); train.batch_size "
                                 "must be a multiple of it")
    max_new_tokens: int = Field(32, ge=1, description="tokens generated per completion")
    max_prompt_length: int = Field(256, ge=1, description="most prompt tokens (chat template applied); a longer "
                                   "prompt is refused with its row (TRL does not truncate prompts)")
    temperature: float = Field(1.0, gt=0, description="sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling threshold")
    top_k: int = Field(0, ge=0, description="top-k sampling (0: off)")
    repetition_penalty: float = Field(1.0, gt=0, description="repetition penalty (1: off)")


class RewardsSection(Section):
    functions: list[str] = Field(default_factory=list, description=(
        "reward functions: 'package.module:function' import strings, or built-ins exact_match | format "
        "(embedded tasks)"))
    models: list[str] = Field(default_factory=list, description=(
        "reward-model folders: a `tunesmith reward` output (adapter + score head) or a full one-output "
        "sequence-classification model"))
    weights: list[float] | None = Field(None, description=(
        "one weight per reward (functions first, then models, then API callables); null: all 1"))


class RLSection(Section):
    method: Literal["grpo", "rloo"] = Field("grpo", description="grpo (group-normalized advantages) | rloo "
                                            "(leave-one-out baseline); TRL 1.16 has no PPO")
    beta: float = Field(0.04, ge=0, description="KL coefficient toward the reference model (0: no KL term "
                        "and no KL logged)")
    epsilon: float = Field(0.2, gt=0, description="clipping range of the policy ratio")
    num_iterations: int = Field(1, ge=1, description="optimization passes per generated batch")
    eval_samples: int = Field(2, ge=1, description="sampled completions per held-out prompt for mean reward")


class RLHFConfig(Section):
    """An online RL run. Example:

    >>> coerce(RLHFConfig, {"model": {"path": "m"}, "rewards": {"functions": ["format"]}}).rl.method
    'grpo'
    """

    model: ModelSection = Field(description="the policy's starting model")
    adapter: AdapterConfig = Field(default_factory=AdapterConfig, description="adapter (LoRA by default)")
    data: DataPrepConfig = Field(default_factory=DataPrepConfig, description=(
        "prompts: instruction/chat/preference rows; the final assistant turn (or chosen answer) reaches "
        "reward functions as the `answer` column"))
    tasks: TasksSection = Field(default_factory=TasksSection, description=(
        "embedded tasks: prompts when data.inputs is empty; held-out prompts when the data has no validation split"))
    rl: RLSection = Field(default_factory=RLSection, description="algorithm")
    generation: GenerationSection = Field(default_factory=GenerationSection, description="sampling")
    rewards: RewardsSection = Field(default_factory=RewardsSection, description="reward sources")
    train: TrainSection = Field(default_factory=lambda: TrainSection(lr=1e-4, max_steps=100, warmup_steps=0),
                                description="optimisation (batch_size counts completions)")
    run: RunSection = Field(default_factory=RunSection, description="run directory")
    push_to_hub: PushConfig | None = Field(None, description="push the result to the Hub at the end: {repo: user/name, ...}")


def rlhf(config: RLHFConfig | dict | str | None = None, *, reward_funcs: Sequence[RewardFunc] = (),
         **sections: Any) -> StageResult:
    """Online RL as `config` says; `reward_funcs` adds Python callables to the configured rewards.
    Metrics: held-out mean reward before and after (`before/mean_reward`, `after/mean_reward`, and
    per reward), the last logged KL to the reference (`kl`) and training reward (`train_reward`).

    def short(prompts, completions, **kw): return [-len(c[0]["content"]) / 10 for c in completions]
    rlhf(model={"path": "runs/sft/model"}, tasks={"names": ["add"]}, reward_funcs=[short])
    """
    cfg = coerce(RLHFConfig, config, **sections)
    _check_batch(cfg)
    funcs, names = reward_sources(cfg.rewards, list(reward_funcs))
    weights = _weights(cfg.rewards, len(funcs))

    def load(run: RunDir, dtype: str) -> SimpleNamespace:
        model, tok = load_policy(cfg.model, cfg.adapter,
                                  gradient_checkpointing=cfg.train.gradient_checkpointing is True)
        getattr(model, "get_base_model", lambda: model)().generation_config.eos_token_id = end_of_turn_ids(tok)
        train_ds, heldout = prompt_data(cfg, run, tok)
        _check_prompt_lengths(train_ds["prompt"], tok, cfg.generation.max_prompt_length, "training")
        _check_prompt_lengths([r["prompt"] for r in heldout], tok, cfg.generation.max_prompt_length, "held-out")
        return SimpleNamespace(model=model, tok=tok, train=train_ds, heldout=heldout,
                               environment={"train_prompts": len(train_ds), "rewards": names})

    def build(x: SimpleNamespace, run: RunDir, dtype: str, resuming: bool) -> Training:
        import trl

        before = heldout_reward(x.model, x.tok, x.heldout, funcs, names, weights, cfg, "before/")
        config_cls, trainer_cls = (trl.GRPOConfig, trl.GRPOTrainer) if cfg.rl.method == "grpo" \
            else (trl.RLOOConfig, trl.RLOOTrainer)
        g = cfg.generation
        args = config_cls(**training_kwargs(cfg.train, run, dtype, has_eval=False),
                          num_generations=g.num_generations, max_completion_length=g.max_new_tokens,
                          temperature=g.temperature, top_p=g.top_p, top_k=g.top_k,
                          repetition_penalty=g.repetition_penalty, beta=cfg.rl.beta, epsilon=cfg.rl.epsilon,
                          num_iterations=cfg.rl.num_iterations, reward_weights=weights, disable_dropout=True,
                          log_completions=False)
        trainer = trainer_cls(model=x.model, reward_funcs=funcs, args=args, train_dataset=x.train,
                              processing_class=x.tok, reward_processing_classes=_reward_tokenizers(funcs, x.tok))
        return Training(trainer, before, lambda model: {
            **_last_logged(trainer.state.log_history, ("kl", "reward", "entropy")),
            **heldout_reward(model, x.tok, x.heldout, funcs, names, weights, cfg, "after/")})

    return run_stage("rlhf", cfg, load, build)


# ---- reward sources ---------------------------------------------------------------------------

def reward_sources(rewards: RewardsSection, callables: list[RewardFunc]) -> tuple[list, list[str]]:
    """(reward functions/models in TRL's form, their names): configured functions (guarded),
    reward models, then API callables (guarded)."""
    funcs: list = []
    names: list[str] = []
    for spec in rewards.functions:
        fn = import_reward(spec)
        funcs.append(guard(fn, spec))
        names.append(spec)
    for folder in rewards.models:
        funcs.append(load_reward_model(folder))
        names.append(folder)
    for fn in callables:
        if not callable(fn):
            raise UserError(f"reward_funcs holds {type(fn).__name__}, not a function", field="reward_funcs",
                            fix="pass functions f(prompts, completions, **kw) -> list[float]")
        name = getattr(fn, "__qualname__", getattr(fn, "__name__", repr(fn)))
        funcs.append(guard(fn, name, field="reward_funcs"))
        names.append(name)
    if not funcs:
        raise UserError("no reward: name at least one reward function or reward model", field="rewards.functions",
                        fix="e.g. --rewards.functions '[exact_match]' or --rewards.models '[runs/reward/model]'")
    return funcs, names


def import_reward(spec: str) -> RewardFunc:
    """A reward function from 'package.module:function' or a built-in name (exact_match, format).

    >>> import_reward("tunesmith.alignment.toy_tasks:format_reward").__name__
    'format_reward'
    """
    if spec in task_lib.REWARD_FUNCTIONS:
        return task_lib.REWARD_FUNCTIONS[spec]
    module_name, sep, attr = spec.partition(":")
    fix = "write 'package.module:function' (importable from the working directory) or a built-in: " + \
        ", ".join(task_lib.REWARD_FUNCTIONS)
    if not sep or not module_name or not attr:
        raise UserError(f"reward function {spec!r} is not an import string", field="rewards.functions", fix=fix)
    try:
        module = _import_from_cwd(module_name)
    except Exception as e:  # noqa: BLE001 - any import-time failure of user code is bad input
        raise UserError(f"cannot import module {module_name!r} of reward function {spec!r}: "
                        f"{type(e).__name__}: {e}", field="rewards.functions", fix=fix) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UserError(f"module {module_name!r} has no function {attr!r}", field="rewards.functions", fix=fix)
    return fn


def _import_from_cwd(module_name: str):
    """Import `module_name`, also from the working directory (as `python -m` finds it, and an
    installed `tunesmith` command does not), so a recipe's `my_rewards:score` finds my_rewards.py.
    The working directory is searched only for a top-level name found nowhere else, and sys.path
    is left as it is."""
    top = module_name.split(".")[0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != top:
            raise
    spec = importlib.machinery.PathFinder.find_spec(top, [os.getcwd()])
    if spec is None:
        raise ModuleNotFoundError(f"No module named {top!r} (looked in the installed packages and in "
                                  f"{os.getcwd()})", name=top)
    module = importlib.util.module_from_spec(spec)
    sys.modules[top] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(top, None)
        raise
    return importlib.import_module(module_name)


def guard(fn: RewardFunc, name: str, field: str = "rewards.functions") -> RewardFunc:
    """`fn` wrapped so that an exception, a wrong number of rewards or a non-number becomes a
    UserError naming the function (TRL would stop with a bare traceback)."""

    @functools.wraps(fn)
    def call(prompts, completions, **kwargs):
        try:
            out = fn(prompts=prompts, completions=completions, **kwargs)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - the user's function failed: say which one and why
            raise UserError(f"reward function {name} raised {type(e).__name__}: {e}", field=field,
                            fix="it is called as f(prompts, completions, **dataset_columns) and must return "
                                "one float per completion") from e
        try:
            values = [None if v is None else float(v) for v in out]
        except (TypeError, ValueError):
            raise UserError(f"reward function {name} returned {str(out)[:80]!r}, not a list of numbers",
                            field=field, fix="return one float (or None) per completion") from None
        if len(values) != len(completions):
            raise UserError(f"reward function {name} returned {len(values)} rewards for {len(completions)} "
                            "completions", field=field, fix="return one float per completion")
        return values

    return call


def load_reward_model(folder: str) -> torch.nn.Module:
    """A scoring model from `folder`: an adapter folder written by `tunesmith reward` (merged into its
    base unless quantized) or a full one-output sequence-classification model; tokenizer attached
    as `.reward_tokenizer`."""
    from transformers import AutoModelForSequenceClassification

    from ..adapters.artifacts import load_adapter
    from ..adapters.quantize import is_quantized
    from ..core.modelio import load_model

    path = run_output(folder)  # a reward run directory stands for its model
    if (path / "adapter_config.json").is_file():
        model = load_adapter(path)
        if not is_quantized(model):
            model = model.merge_and_unload()
    else:
        model = load_model(path, AutoModelForSequenceClassification)
    if getattr(model.config, "num_labels", None) != 1:
        raise UserError(f"a reward model has one output, this one has {model.config.num_labels}", file=path,
                        field="rewards.models", fix="train one with `tunesmith reward`")
    tok = load_tokenizer(ModelSection(path=str(path)))
    model.config.pad_token_id = tok.pad_token_id
    model.reward_tokenizer = tok
    return model.eval()


def _reward_tokenizers(funcs: list, policy_tok) -> list:
    return [getattr(f, "reward_tokenizer", policy_tok) if isinstance(f, torch.nn.Module) else None for f in funcs]


def _weights(rewards: RewardsSection, n: int) -> list[float] | None:
    if rewards.weights is not None and len(rewards.weights) != n:
        raise UserError(f"{len(rewards.weights)} weights for {n} rewards", field="rewards.weights",
                        fix="give one weight per reward function/model, in order: functions, models, callables")
    return rewards.weights


# ---- data -------------------------------------------------------------------------------------

def prompt_data(cfg: RLHFConfig, run, tok) -> tuple[Any, list[dict]]:
    """(training prompts as a Dataset with `prompt` (+ `answer`, `task`) columns, held-out rows)."""
    from datasets import Dataset

    t = cfg.tasks
    if not cfg.data.inputs and t.names:
        train = Dataset.from_list(task_lib.prompt_rows(t.names, t.train_rows, seed=t.seed))
        validation = None
    else:
        splits = stage_data(cfg.data, t, run, tok, "instruction")
        train = splits["train"].map(_as_prompt, remove_columns=splits["train"].column_names)
        validation = splits.get("validation")
        validation = [_as_prompt(r) for r in validation] if validation is not None else None
    if validation is None and t.names:
        validation = task_lib.prompt_rows(t.names, t.eval_rows, seed=t.seed + 1, split="heldout")
    if not validation:
        raise UserError("no held-out prompts to measure the mean reward on", field="data.split.validation",
                        fix="set data.split.validation (e.g. 0.1) or name embedded tasks in tasks.names")
    return train, validation


def _check_prompt_lengths(prompts: Sequence[Any], tok: Any, limit: int, where: str) -> None:
    """Refuse the first prompt longer than `generation.max_prompt_length` tokens as the policy sees it."""
    for i, prompt in enumerate(prompts):
        ids = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False) \
            if isinstance(prompt, list) else tok(prompt, add_special_tokens=False)["input_ids"]
        if len(ids) > limit:
            raise UserError(f"{where} prompt {i + 1} has {len(ids)} tokens, over the {limit} allowed",
                            field="generation.max_prompt_length",
                            fix=f"raise generation.max_prompt_length to {len(ids)} or more, or shorten the prompt")


def _as_prompt(row: dict) -> dict:
    """An instruction row -> {"prompt": messages before the final answer, "answer": its text}."""
    if "messages" in row:
        return {"prompt": row["messages"][:-1], "answer": row["messages"][-1]["content"]}
    return {"prompt": row["prompt"], "answer": row["completion"][-1]["content"]}


def _check_batch(cfg: RLHFConfig) -> None:
    per_device, accum = batch_layout(cfg.train)
    per_generation = per_device * accum * world_size()
    if per_generation % cfg.generation.num_generations:
        raise UserError(f"train.batch_size {cfg.train.batch_size} completions is not a multiple of "
                        f"generation.num_generations {cfg.generation.num_generations}", field="train.batch_size",
                        fix="make the batch a whole number of groups, e.g. batch_size 16 with num_generations 4")


# ---- held-out evaluation ----------------------------------------------------------------------

def heldout_reward(model, tok, rows: list[dict], funcs: list, names: list[str], weights: list[float] | None,
                   cfg: RLHFConfig, prefix: str) -> dict[str, float]:
    """Mean (weighted-sum) reward of completions sampled from `model` on held-out `rows`, with the
    training sampling settings and a fixed seed, plus the mean of each reward source."""
    completions = sample_completions(model, tok, [r["prompt"] for r in rows], cfg.generation,
                                     cfg.rl.eval_samples, cfg.train.seed)
    k = cfg.rl.eval_samples
    rep = [r for r in rows for _ in range(k)]
    columns = {key: [r[key] for r in rep] for key in rep[0] if key != "prompt"}
    prompts = [r["prompt"] for r in rep]
    w = weights or [1.0] * len(funcs)
    total = [0.0] * len(rep)
    out: dict[str, float] = {}
    for fn, name, wi in zip(funcs, names, w):
        if isinstance(fn, torch.nn.Module):
            scores = score_with_model(fn, prompts, completions)
        else:
            scores = [math.nan if v is None else v for v in fn(prompts=prompts, completions=completions, **columns)]
        out[f"{prefix}reward/{name}"] = round(sum(scores) / len(scores), 4)
        total = [t + wi * s for t, s in zip(total, scores)]
    out[f"{prefix}mean_reward"] = round(sum(total) / len(total), 4)
    return out


def sample_completions(model, tok, prompts: list[list[dict]], gen: GenerationSection, samples: int,
                       seed: int, batch_size: int = 64) -> list[list[dict]]:
    """`samples` sampled completions per chat prompt, as TRL gives them to reward functions
    (`[{"role": "assistant", "content": text}]`), prompt by prompt."""
    sampling = {"temperature": gen.temperature, "top_p": gen.top_p, "top_k": gen.top_k,
                "repetition_penalty": gen.repetition_penalty}
    texts = task_lib.generate_answers(model, tok, [p for p in prompts for _ in range(samples)], gen.max_new_tokens,
                                      batch_size, sampling=sampling, seed=seed)
    return [[{"role": "assistant", "content": text}] for text in texts]


def score_with_model(model, prompts: list[list[dict]], completions: list[list[dict]]) -> list[float]:
    """Scores of a reward model for chat (prompt, completion) pairs, rendered with its own tokenizer."""
    tok = model.reward_tokenizer
    texts = [render_messages(p + c, tok) for p, c in zip(prompts, completions)]
    enc = tok(texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)
    with torch.no_grad():
        return model(**enc.to(model.device)).logits[:, 0].float().tolist()


def _last_logged(history: list[dict], keys: Sequence[str]) -> dict[str, float]:
    """The last training-log value of each key (`reward` is reported as `train_reward`)."""
    out = {}
    for key in keys:
        values = [h[key] for h in history if key in h]
        if values:
            out["train_reward" if key == "reward" else key] = values[-1]
    return out
