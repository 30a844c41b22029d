"""OpenAI fine-tuning requests -> tunesmith stage recipes.

`method.type` picks the stage: OpenAI's `supervised` (-> `sft`) and `dpo`, and tunesmith's own
`kto`, `orpo`, `simpo`, `reward`, `grpo` and `rloo` (-> `rlhf`). OpenAI's hyperparameters map onto
the stage's typed config: `batch_size` -> `train.batch_size`, `learning_rate_multiplier` -> the
stage's own default `train.lr` times the multiplier, `n_epochs` -> `train.max_steps` (epochs x rows /
batch size), `beta` -> `<stage>.beta`. `method.<type>.recipe` is a tunesmith recipe fragment merged
over that (e.g. `{"train": {"max_steps": 50}, "kto": {"desirable_weight": 1.2}}`); the keys the
service owns (run folder, model path, data inputs, Hub push, code-running options) are refused.
The recipe is validated by the stage's pydantic config, so the stage's defaults and checks hold;
an invalid value is a `RequestError` naming the request field.
"""
from __future__ import annotations

import math
import re
from typing import Any

from ..core.config import build, deep_merge
from ..core.errors import UserError
from ..stages import STAGES

METHODS = {"supervised": "sft", "dpo": "dpo", "kto": "kto", "orpo": "orpo", "simpo": "simpo", "reward": "reward",
           "grpo": "rlhf", "rloo": "rlhf"}
# the data kinds each stage trains on (tunesmith.data.formats.FORMAT_KIND values)
STAGE_KINDS = {"sft": ("conversational", "prompt_completion"), "dpo": ("preference",), "orpo": ("preference",),
               "simpo": ("preference",), "reward": ("preference",), "kto": ("preference", "unpaired_preference"),
               "rlhf": ("conversational", "prompt_completion", "preference")}
HYPERPARAMETERS = ("batch_size", "learning_rate_multiplier", "n_epochs", "beta")
# recipe keys a tenant may not set: the service sets them, or they read server files or run code
FORBIDDEN = ("run", "model.path", "model.tokenizer", "model.trust_remote_code", "model.allow_pickle", "data.inputs",
             "data.output", "data.check.tokenizer", "push_to_hub", "teacher", "rewards.functions", "rewards.models",
             "train.report_to")
SAFE_REWARD_FUNCTIONS = ("exact_match", "format")
SUFFIX = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class RequestError(Exception):
    """A 400 in OpenAI's error shape: the message and the request field (`param`) it is about."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int = 400,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.param, self.code, self.status, self.type = param, code, status, type


def stage_of(method: dict) -> tuple[str, str]:
    """(method type, stage) of a request's `method` object."""
    if not isinstance(method, dict):
        raise RequestError("method must be an object such as {\"type\": \"supervised\"}", "method")
    kind = method.get("type")
    if kind not in METHODS:
        raise RequestError(f"method.type {kind!r} is not supported; choose one of {', '.join(METHODS)}",
                           "method.type")
    unknown = set(method) - {"type", kind}
    if unknown:
        raise RequestError(f"method has unknown key {sorted(unknown)[0]!r} (method.{kind} holds its settings)",
                           f"method.{sorted(unknown)[0]}")
    return kind, METHODS[kind]


def _number(value: Any, param: str, integer: bool = False) -> float | int | None:
    if value is None or value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise RequestError(f"{param} must be {'an integer' if integer else 'a number'} or \"auto\" (got {value!r})",
                           param)
    if value <= 0 or not math.isfinite(value):
        raise RequestError(f"{param} must be greater than 0 (got {value!r})", param)
    return value


def _forbidden(fragment: dict, param: str) -> None:
    def walk(tree: dict, prefix: str) -> None:
        for key, value in tree.items():
            dotted = f"{prefix}{key}"
            if dotted == "rewards.functions" and isinstance(value, list) \
                    and all(v in SAFE_REWARD_FUNCTIONS for v in value):
                continue
            if dotted in FORBIDDEN:
                raise RequestError(f"{param}.{dotted} is set by the service and cannot be given", f"{param}.{dotted}")
            if isinstance(value, dict):
                walk(value, dotted + ".")
    walk(fragment, "")


def stage_defaults(stage: str) -> Any:
    """The stage's own `train` defaults (the config class is the one place they live)."""
    return STAGES[stage].config_class().model_fields["train"].default_factory()


def build_recipe(stage: str, kind: str, *, base: str, data_input: dict, rows: int, seed: int,
                 hyperparameters: dict, settings: dict, run_dir: str,
                 validation_input: dict | None = None) -> tuple[dict, Any]:
    """(recipe dict, the validated stage config). `settings` is `method.<type>` of the request;
    `hyperparameters` the top-level (legacy) ones, overridden by `settings["hyperparameters"]`;
    `validation_input` (the job's validation_file) becomes an input with `role: validation`."""
    if not isinstance(settings, dict):
        raise RequestError(f"method.{kind} must be an object", f"method.{kind}")
    unknown = set(settings) - {"hyperparameters", "recipe"}
    if unknown:
        name = sorted(unknown)[0]
        raise RequestError(f"method.{kind}.{name} is not a known setting (hyperparameters, recipe)",
                           f"method.{kind}.{name}")
    hp_param = f"method.{kind}.hyperparameters" if settings.get("hyperparameters") else "hyperparameters"
    hp = {**(hyperparameters or {}), **(settings.get("hyperparameters") or {})}
    for name in hp:
        if name not in HYPERPARAMETERS:
            raise RequestError(f"{hp_param}.{name} is not a known hyperparameter ({', '.join(HYPERPARAMETERS)})",
                               f"{hp_param}.{name}")
    cls = STAGES[stage].config_class()
    train = stage_defaults(stage)
    inputs = [data_input] + ([{**validation_input, "role": "validation"}] if validation_input else [])
    recipe: dict[str, Any] = {"model": {"path": base}, "data": {"inputs": inputs},
                              "run": {"dir": run_dir, "sample_tokens": 0}, "train": {"seed": seed}}
    origin = {"train.seed": "seed", "model.path": "model"}
    batch = _number(hp.get("batch_size"), f"{hp_param}.batch_size", integer=True)
    if batch is not None:
        recipe["train"]["batch_size"] = batch
        origin["train.batch_size"] = f"{hp_param}.batch_size"
    mult = _number(hp.get("learning_rate_multiplier"), f"{hp_param}.learning_rate_multiplier")
    if mult is not None:
        recipe["train"]["lr"] = train.lr * mult
        origin["train.lr"] = f"{hp_param}.learning_rate_multiplier"
    epochs = _number(hp.get("n_epochs"), f"{hp_param}.n_epochs")
    if epochs is not None:
        recipe["train"]["max_steps"] = max(1, math.ceil(epochs * rows / (batch or train.batch_size)))
        origin["train.max_steps"] = f"{hp_param}.n_epochs"
    beta = _number(hp.get("beta"), f"{hp_param}.beta")
    if beta is not None:
        section = "rl" if stage == "rlhf" else stage
        field = cls.model_fields.get(section)
        if field is None or "beta" not in getattr(field.annotation, "model_fields", {}):
            raise RequestError(f"{hp_param}.beta does not apply to method {kind}", f"{hp_param}.beta")
        recipe[section] = {"beta": beta}
        origin[f"{section}.beta"] = f"{hp_param}.beta"
    if kind in ("grpo", "rloo"):
        recipe["rl"] = {**recipe.get("rl", {}), "method": kind}
    fragment = settings.get("recipe") or {}
    if not isinstance(fragment, dict):
        raise RequestError(f"method.{kind}.recipe must be an object (a tunesmith recipe fragment)",
                           f"method.{kind}.recipe")
    _forbidden(fragment, f"method.{kind}.recipe")
    recipe = deep_merge(recipe, fragment)
    try:
        cfg = build(cls, recipe, source="request")
    except UserError as e:
        found = re.search(r'config key "([^"]+)"', str(e))
        key = found.group(1) if found else None
        if key:  # pydantic's location may end in the union member it tried ("dpo.loss_type.literal[...]")
            parts = key.split(".")
            n = next((i for i, part in enumerate(parts) if not re.fullmatch(r"\w+", part)), len(parts))
            key = ".".join(parts[:n])
        param = origin.get(key) or (f"method.{kind}.recipe.{key}" if key else f"method.{kind}.recipe")
        text = str(e).removeprefix("request: ")
        raise RequestError(f"{param}: {text}", param) from None
    return recipe, cfg


def check_suffix(suffix: Any) -> str | None:
    if suffix is None:
        return None
    if not isinstance(suffix, str) or not SUFFIX.match(suffix):
        raise RequestError("suffix must be 1 to 64 letters, digits, '-', '_' or '.'", "suffix")
    return suffix


def model_name(base: str, suffix: str | None, job_id: str) -> str:
    """The fine-tuned model's name, OpenAI style: `ft:<base>:<suffix>:<job id>`."""
    return f"ft:{base}:{suffix or ''}:{job_id}"


METADATA_PAIRS, METADATA_KEY, METADATA_VALUE = 16, 64, 512


def check_metadata(value: Any) -> dict[str, str] | None:
    """OpenAI's metadata: null, or an object of at most 16 pairs, keys of at most 64 characters and
    string values of at most 512."""
    limits = f"at most {METADATA_PAIRS} pairs, keys of at most {METADATA_KEY} characters, string values of at " \
             f"most {METADATA_VALUE}"
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RequestError(f"metadata must be an object ({limits}), not {type(value).__name__}", "metadata")
    if len(value) > METADATA_PAIRS:
        raise RequestError(f"metadata has {len(value)} pairs; {limits}", "metadata")
    for k, v in value.items():
        if len(k) > METADATA_KEY:
            raise RequestError(f"metadata key {k[:20]!r}... has {len(k)} characters; {limits}", "metadata")
        if not isinstance(v, str):
            raise RequestError(f"metadata[{k!r}] is {type(v).__name__}, not a string; {limits}", "metadata")
        if len(v) > METADATA_VALUE:
            raise RequestError(f"metadata[{k!r}] has {len(v)} characters; {limits}", "metadata")
    return value


def metadata_filter(query: list[tuple[str, str]]) -> tuple[dict[str, str], bool]:
    """(pairs every listed job must hold, only jobs without metadata) from `metadata[KEY]=VALUE`
    (several: all must match; an empty value matches the empty string) or `metadata=null`."""
    pairs: dict[str, str] = {}
    null = False
    for name, value in query:
        if name == "metadata":
            if value != "null":
                raise RequestError(f"metadata={value!r}: filter with metadata[KEY]=VALUE, or metadata=null for jobs "
                                   "without metadata", "metadata")
            null = True
        elif name.startswith("metadata["):
            if not name.endswith("]") or "[" in name[9:-1] or "]" in name[9:-1]:
                raise RequestError(f"{name!r}: filter with metadata[KEY]=VALUE", "metadata")
            pairs[name[9:-1]] = value
    if null and pairs:
        raise RequestError("give either metadata=null or metadata[KEY]=VALUE filters, not both", "metadata")
    return pairs, null
