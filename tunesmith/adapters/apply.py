"""Applying an adapter block to a model: one peft config per method, built from the model.

`apply(model, AdapterConfig(...))` returns a `peft.PeftModel` whose only trainable
parameters are the adapter's (plus the task head for `seq_cls`), or, for `method: full`,
the model itself with every parameter trainable.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from peft import (IA3Config, LoraConfig, PeftConfig, PrefixTuningConfig,
                  PromptTuningConfig, TaskType, VeraConfig, get_peft_model,
                  prepare_model_for_kbit_training)
from torch import nn
from transformers.pytorch_utils import Conv1D

from ..compat import expose_head_bias, prefix_tuning_backbone
from ..core.config import coerce
from ..core.errors import UserError
from .allocator import return_freed_memory
from .artifacts import remember_initial_weights
from .config import LORA_FAMILY, PROMPT_METHODS, AdapterConfig
from .loss import use_lean_loss
from .quantize import is_quantized
from .targets import SEQ_CLS_HEAD_NAMES, check_target_names, default_target_names, select
from .tokens import FIELD as TOKENS_FIELD
from .tokens import token_indices_config

TASK_TYPES = {"causal_lm": TaskType.CAUSAL_LM, "seq_cls": TaskType.SEQ_CLS}


def _has_module(model: nn.Module, short_name: str) -> bool:
    return any(name.split(".")[-1] == short_name for name, _ in model.named_modules())


def _check_task(model: nn.Module, cfg: AdapterConfig) -> None:
    has_cls_head = any(_has_module(model, n) for n in ("classifier", "score"))
    if cfg.task == "seq_cls" and not has_cls_head:
        raise UserError(f"task seq_cls needs a classification head, but {type(model).__name__} "
                        "has none", field="adapter.task",
                        fix="load the model with load_base(path, adapter, num_labels=N) or "
                            "AutoModelForSequenceClassification")
    if cfg.task == "causal_lm" and has_cls_head:
        raise UserError(f"{type(model).__name__} has a classification head but the task is "
                        "causal_lm", field="adapter.task", fix="set adapter.task: seq_cls")
    if cfg.method == "olora" and any(isinstance(m, Conv1D) for m in model.modules()):
        raise UserError("olora cannot initialize GPT-2 style Conv1D layers (a peft limitation)",
                        field="adapter.method", fix="use pissa or lora on this model")


def _check_quantization(model: nn.Module, cfg: AdapterConfig) -> None:
    quant = cfg.resolved_quantize()
    if quant != "none" and not is_quantized(model):
        raise UserError(f"adapter.quantize is {quant} but the model was loaded in full precision",
                        field="adapter.quantize",
                        fix="load it with tunesmith.adapters.load_base(path, adapter)")
    if cfg.method == "full" and is_quantized(model):
        raise UserError("method full cannot train a quantized (bitsandbytes) model",
                        field="adapter.method", fix="use method qlora, or load the base unquantized")


def head_modules(model: nn.Module, cfg: AdapterConfig) -> list[str] | None:
    """Modules trained fully next to the adapter: the user's list, else the task head."""
    if cfg.modules_to_save is not None:
        check_target_names(model, cfg.modules_to_save)
        return list(cfg.modules_to_save)
    if cfg.task == "seq_cls":
        return [n for n in SEQ_CLS_HEAD_NAMES if _has_module(model, n)]
    return None


def peft_config(model: nn.Module, adapter: AdapterConfig | dict | None = None,
                token_ids: Sequence[int] | None = None) -> PeftConfig:
    """The peft config `adapter` means for `model` (targets resolved); `token_ids` (LoRA family)
    are the token rows to train next to it (see `tokens.trainable_token_ids`). Example:

    peft_config(build_model("llama", "nano"), AdapterConfig(method="dora")).use_dora
    # -> True
    """
    cfg = coerce(AdapterConfig, adapter)
    if isinstance(cfg.trainable_tokens, list) and token_ids is None:
        raise UserError("lists tokens, which this stage does not resolve (it needs the tokenizer)",
                        field=TOKENS_FIELD, fix="set none here; in Python pass apply(..., "
                        "token_ids=trainable_token_ids(adapter, tokenizer))")
    task_type = TASK_TYPES[cfg.task]
    if cfg.method == "prompt_tuning":
        return PromptTuningConfig(task_type=task_type, num_virtual_tokens=cfg.num_virtual_tokens)
    if cfg.method == "prefix_tuning":
        return PrefixTuningConfig(task_type=task_type, num_virtual_tokens=cfg.num_virtual_tokens)
    save = head_modules(model, cfg)
    exclude = tuple(save or ())
    targets = cfg.target_modules or default_target_names(model, exclude=exclude)
    check_target_names(model, targets)
    chosen = select(model, targets, cfg.layers)
    if not chosen and cfg.method != "full":
        raise UserError(f"target_modules {targets} with layers {cfg.layers} select no linear "
                        "module", field="adapter.target_modules", fix="widen the selection")
    if cfg.method == "ia3":
        # full names: a suffix such as "output.dense" can name both an FFN and an attention output
        names = [t.name for t in chosen if not any(p in exclude for p in t.name.split("."))]
        ff = [t.name for t in chosen if t.is_feedforward_out and t.name in names]
        return IA3Config(task_type=task_type, target_modules=names, feedforward_modules=ff,
                         modules_to_save=save)
    if cfg.method == "vera":
        return VeraConfig(task_type=task_type, r=cfg.rank, target_modules=targets,
                          vera_dropout=cfg.dropout, layers_to_transform=cfg.layers,
                          modules_to_save=save, save_projection=True)
    return LoraConfig(task_type=task_type, r=cfg.rank, lora_alpha=cfg.resolved_alpha(),
                      lora_dropout=cfg.dropout, target_modules=targets,
                      layers_to_transform=cfg.layers, modules_to_save=save,
                      use_dora=cfg.method == "dora", use_rslora=cfg.method == "rslora",
                      init_lora_weights=cfg.resolved_init(),
                      trainable_token_indices=token_indices_config(model, cfg, token_ids, targets))


def apply(model: nn.Module, adapter: AdapterConfig | dict | None = None,
          adapter_name: str = "default", *, token_ids: Sequence[int] | None = None,
          gradient_checkpointing: bool = False) -> nn.Module:
    """Wrap `model` with the adapter `adapter` describes; only adapter (and head) weights train,
    plus, for a LoRA-family method, the embedding (and untied LM-head) rows of `token_ids`
    (`tokens.trainable_token_ids(adapter, tokenizer)` resolves `adapter.trainable_tokens`).

    from tunesmith.pretraining.presets import build_model
    peft_model = apply(build_model("llama", "nano"), AdapterConfig(method="lora", rank=8))
    peft_model.print_trainable_parameters()
    """
    cfg = coerce(AdapterConfig, adapter)
    _check_task(model, cfg)
    _check_quantization(model, cfg)
    first = next(model.parameters(), None)
    if first is None or first.device.type == "cpu":
        return_freed_memory()  # CPU training: freed activations go back to the system
    if is_quantized(model):
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    elif gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if cfg.task == "causal_lm":
        use_lean_loss(model)
    if cfg.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if cfg.method in PROMPT_METHODS and gradient_checkpointing:
        model.enable_input_require_grads()
    peft_model = get_peft_model(model, peft_config(model, cfg, token_ids), adapter_name=adapter_name)
    if cfg.method == "prefix_tuning":
        prefix_tuning_backbone(peft_model)
    expose_head_bias(peft_model)  # TRL's fused LM-head loss reads lm_head.bias
    remember_initial_weights(peft_model, cfg)
    return peft_model


def trainable_summary(model: nn.Module) -> dict[str, Any]:
    """{"trainable": n, "total": n, "percent": x} over unique parameters."""
    params = {id(p): p for p in model.parameters()}.values()
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total = sum(p.numel() for p in params)
    return {"trainable": trainable, "total": total, "percent": 100.0 * trainable / max(total, 1)}


def is_lora_family(adapter: AdapterConfig) -> bool:
    return adapter.method in LORA_FAMILY
