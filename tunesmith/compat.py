"""Every workaround of a library behaviour, in one place: each names the library version it was
written against and the library code it mirrors, and tests/core/test_compat.py holds a test
that fails when the library changes under it (then the workaround is revisited, not kept blind).

| workaround | library (version) | why |
|---|---|---|
| `prefix_tuning_backbone` | peft 0.21.2, transformers 5.24 | peft looks for `past_key_values` in an encoder's forward signature; BERT's now names it `cache` |
| `set_bnb_cpu_packing` | bitsandbytes 0.50.2 | AVX512-BF16 CPUs repack 4-bit weights at the first no-grad forward (other numbers, crashes) |
| `expose_head_bias` | trl 1.16, peft 0.21.2 | TRL's fused LM-head loss reads `lm_head.bias`, which peft's token wrapper does not forward |
| `unprepare_after_evaluate` | transformers 5.24, accelerate 1.15 | an `evaluate()` before `train()` marks the model prepared, so DDP never wraps it |
| `load_checkpoint_weights` | transformers 5.24 | loading a finished checkpoint without training one step past `max_steps` |
| `CustomSampler` | transformers 5.24 | the Trainer's train sampler is chosen by the private `_get_train_sampler` |
| `count_real_tokens` | transformers 5.24, trl 1.16 | the Trainer counts tokens only from `input_ids`/`attention_mask`; preference and KTO batches name theirs `chosen_*`, `completion_*` |
| `keep_adapter_dtype` | trl 1.16 | TRL's trainers cast a quantized model's trainable weights to bf16 (slow or failing on CPU) |
| `quiet_library_noise` | bitsandbytes 0.50.2 | on AVX512-BF16 CPUs every import warns that the optional `kernels` package is missing, for a packed path tunesmith turns off |
| `DPO_LOSS_TYPES` | trl 1.16 | the DPO loss names TRL accepts, for tunesmith's typed config |
| `trl_experimental` | trl 1.16 | ORPO, CPO (SimPO), GKD and the ChatML collator live under `trl.experimental` |
| `fsdp_on_cpu` | accelerate 1.15 | `AcceleratorState` turns only GPU-like multi-process runs into FSDP; a CPU run launched with an FSDP config stays MULTI_CPU and silently trains DDP (test: tests/distributed/test_fsdp.py) |
| `fsdp2_evaluate_unsharded` | transformers 5.24, accelerate 1.15 | an `evaluate()` before `train()` (or after reloading a finished checkpoint) under FSDP2 prepares the model without its optimizer, which accelerate refuses (test: tests/distributed/test_fsdp.py) |
| `unshard_fsdp2` | torch 2.13 | FSDP2 (`fully_shard`) has no inverse: after training, every stage's save (`save_pretrained`, PEFT) needs the whole model, not DTensor shards (test: tests/distributed/test_fsdp.py) |
| `fsdp2_sees_tied_tokens` | accelerate 1.15, peft 0.21.2 | FSDP2 preparation looks for tied embeddings through `get_input/output_embeddings`; peft's trainable-token wrappers hide the tie and sharding fails (test: tests/distributed/test_fsdp.py) |
| `process_group_timeout` | torch 2.13 | the collective timeout a process group was created with is readable only through private attributes (test: tests/distributed/test_how_it_ran.py, test_fsdp.py: environment.json's `timeout_s`) |
| `plain_lm_head` | trl 1.16 | TRL's fused LM-head kernel scores every position in Python-level tiles off Triton devices: on CPU with a small vocabulary it takes 3x the whole model's forward |
| `keep_freed_heap` | glibc 2.36 | glibc gives large freed blocks back to the kernel (blocks over the mmap threshold; heap top over the trim threshold): a training step frees and reallocates the same tensors every step, and each time the kernel faults and zeroes every page (a hand-written nano pretraining step: 2,000-12,500 faults a step; the stage with this: ~20) |
"""
from __future__ import annotations

import functools
import inspect
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `import tunesmith` loads this module and must not import torch
    from torch import nn

# --- peft prefix tuning on encoders (peft 0.21.2, transformers 5.24) ------------------------
# peft/peft_model.py PeftModelForSequenceClassification._prefix_tuning_forward:
#   fwd_params = inspect.signature(backbone.forward).parameters
#   if "past_key_values" not in fwd_params: raise ValueError("Model does not support past key values")


def _takes(fn, name: str) -> bool:
    return name in inspect.signature(fn).parameters


def prefix_tuning_backbone(peft_model: nn.Module) -> bool:
    """Let peft's prefix tuning reach an encoder whose forward names its cache `cache`.

    Gives the backbone (peft's `transformer_backbone_name`, e.g. `bert`) an instance `forward`
    that takes `past_key_values` and passes it on as `cache`. Returns whether it was needed.
    """
    name = getattr(peft_model, "transformer_backbone_name", None)
    if name is None:
        return False
    backbone = peft_model.base_model.get_submodule(name)
    original = backbone.forward
    if _takes(original, "past_key_values") or not _takes(original, "cache"):
        return False

    @functools.wraps(original)
    def forward(*args, past_key_values=None, **kwargs):
        if past_key_values is not None:
            kwargs["cache"] = past_key_values
        return original(*args, **kwargs)

    sig = inspect.signature(original)
    extra = inspect.Parameter("past_key_values", inspect.Parameter.KEYWORD_ONLY, default=None)
    params = [p for p in sig.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    params += [extra] + [p for p in sig.parameters.values() if p.kind == inspect.Parameter.VAR_KEYWORD]
    forward.__signature__ = sig.replace(parameters=params)
    backbone.forward = forward
    return True


# --- bitsandbytes' CPU packed 4-bit layout (bitsandbytes 0.50.2) -------------------------
# bitsandbytes/nn/modules.py:
#   Linear4bit.__init__: self.support_avx512bf16_for_cpu = has_avx512bf16()
#   Linear4bit.forward: if x.device.type == "cpu" and self.support_avx512bf16_for_cpu
#       and not self.training and not x.requires_grad and not quant_state.packing_format_for_cpu:
#           self.weight.data, quant_state = _convert_weight_packed_for_cpu(...)
# The packed layout keeps absmax in bf16 and multiplies in bf16 (a C++ AVX512-BF16 kernel);
# `peft`'s merge dequantizes the weight as if it were unpacked.
BNB_PACKING_FLAG = "support_avx512bf16_for_cpu"


def bnb_packs_on_this_cpu() -> bool:
    """Whether bitsandbytes would repack 4-bit weights on this CPU (AVX512-BF16 CPUs only)."""
    try:
        from bitsandbytes.functional import has_avx512bf16
    except ImportError:
        return False
    return bool(has_avx512bf16())


def bnb_is_packed(module: nn.Module) -> bool:
    """Whether a Linear4bit's weight is in the CPU-specific packed layout now."""
    state = getattr(getattr(module, "weight", None), "quant_state", None)
    return bool(getattr(state, "packing_format_for_cpu", False))


def set_bnb_cpu_packing(model: nn.Module, enabled: bool) -> int:
    """Turn bitsandbytes' CPU packed 4-bit path on or off for every `Linear4bit` in `model`;
    returns how many layers were set. Off (what `load_base` does) every CPU runs the same
    dequantize-then-matmul path in the compute dtype; a packed weight is unpacked first. On only
    where the CPU has AVX512-BF16 (the kernel needs it)."""
    try:
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return 0
    packs = bool(enabled) and bnb_packs_on_this_cpu()
    count = 0
    for module in model.modules():
        if not isinstance(module, Linear4bit):
            continue
        if not enabled and bnb_is_packed(module):
            weight = module.weight
            weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                weight.data, weight.quant_state)
            module.quant_state = weight.quant_state
        setattr(module, BNB_PACKING_FLAG, packs)
        count += 1
    return count


# --- TRL's fused LM-head loss on peft's trainable-token rows (trl 1.16, peft 0.21.2) -----------
# trl/trainer/utils.py `_fused_forward` reads `lm_head.weight, lm_head.bias`; on peft's
# `TrainableTokensWrapper` (peft/utils/other.py `AuxiliaryTrainingWrapper.__getattr__`) `.weight`
# is the merged weight with the trainable rows (differentiable) but `.bias` raises AttributeError.

def expose_head_bias(model: nn.Module) -> None:
    """Give each peft `TrainableTokensWrapper` a `bias` attribute (its base layer's, usually None).
    Stored outside nn.Module's registries, so no state dict changes."""
    from peft.utils.other import TrainableTokensWrapper

    for module in model.modules():
        if isinstance(module, TrainableTokensWrapper) and "bias" not in module.__dict__:
            object.__setattr__(module, "bias", getattr(module.token_adapter.base_layer, "bias", None))


# --- evaluate() before train() under DDP (transformers 5.24, accelerate 1.15) --------------------
# transformers/trainer.py `evaluate` -> `_prepare_for_eval` prepares the model through the
# accelerator, which records it in `accelerator._models` and sets `_is_accelerate_prepared`;
# `train()` then skips wrapping it in DistributedDataParallel and the processes train apart.

def unprepare_after_evaluate(trainer) -> None:
    """Undo the preparation an `evaluate()` before `train()` left behind."""
    trainer.accelerator._models.clear()
    trainer.model.__dict__.pop("_is_accelerate_prepared", None)
    trainer.model_wrapped = trainer.model


# --- a checkpoint already at max_steps (transformers 5.24) --------------------------------------
# transformers/trainer.py `Trainer._load_from_checkpoint(resume_from_checkpoint, model=None)`:
# `train(resume_from_checkpoint=...)` at max_steps would run one step past the end.

def load_checkpoint_weights(trainer, checkpoint: str) -> None:
    """The model weights of `checkpoint` into `trainer.model`, as `train(resume_from_checkpoint)` does."""
    trainer._load_from_checkpoint(checkpoint)


# --- a custom train sampler (transformers 5.24) -------------------------------------------------
# transformers/trainer.py `get_train_dataloader` -> `_get_dataloader(..., sampler_fn=self._get_train_sampler)`.

class CustomSampler:
    """Trainer mixin: `self.custom_sampler`, when set, is the training sampler."""

    custom_sampler = None

    def _get_train_sampler(self, train_dataset=None):
        if self.custom_sampler is not None:
            return self.custom_sampler
        return super()._get_train_sampler(train_dataset)


# --- real tokens per step (transformers 5.24, trl 1.16) -----------------------------------------
# transformers/trainer.py `_run_epoch` calls `self._track_num_input_tokens(inputs)` for every
# micro-batch; `_track_num_input_tokens` counts `inputs[model.main_input_name]` only (and warns on every
# batch without it: TRL's ORPO/CPO/KTO batches carry `chosen_input_ids`, `completion_input_ids`, ...).
# GRPO/RLOO count prompt+completion tokens themselves into `state.num_input_tokens_seen`
# (trl/trainer/grpo_trainer.py `_generate_and_score_completions`); their loader yields lists of rows.

def _real_tokens(inputs) -> int:
    """Non-padding tokens of one micro-batch: the sum of its attention masks (a `prompt_*` mask only
    when no other mask holds the prompt too), else the `input_ids` of a padding-free batch."""
    if not hasattr(inputs, "keys"):
        return 0  # GRPO/RLOO: raw rows; TRL counts their tokens itself
    masks = [k for k in inputs.keys() if k == "attention_mask" or k.endswith("_attention_mask")]
    if any(not k.startswith("prompt_") for k in masks):
        masks = [k for k in masks if not k.startswith("prompt_")]
    if masks:
        return int(sum(int(inputs[k].sum()) for k in masks))
    ids = inputs.get("input_ids")
    return int(ids.numel()) if ids is not None else 0


def count_real_tokens(trainer) -> None:
    """Make `trainer.state.num_input_tokens_seen` the real (non-padding) tokens trained on, summed
    over processes, whatever the stage's batch layout; tokens/s in metrics.jsonl is read from it."""
    import torch

    def track(inputs) -> None:
        n = _real_tokens(inputs)
        if n:
            count = torch.as_tensor(n, device=trainer.args.device, dtype=torch.int64)
            trainer.state.num_input_tokens_seen += int(trainer.accelerator.gather(count).sum().item())

    trainer._track_num_input_tokens = track


# --- TRL's DPO loss names (trl 1.16, trl/trainer/dpo_config.py `DPOConfig.loss_type` help) ------
# "robust" is cDPO-style robust DPO (with label_smoothing).
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


# --- trainers under trl.experimental (trl 1.16) -------------------------------------------------
TRL_EXPERIMENTAL = {
    "orpo": ("trl.experimental.orpo", ("ORPOConfig", "ORPOTrainer")),
    "cpo": ("trl.experimental.cpo", ("CPOConfig", "CPOTrainer")),
    "gkd": ("trl.experimental.gkd", ("GKDConfig", "GKDTrainer")),
    "chatml_collator": ("trl.experimental.utils", ("DataCollatorForChatML",)),
}


def trl_experimental(name: str) -> tuple:
    """The classes of one `trl.experimental` component, e.g. `trl_experimental("gkd")` ->
    (GKDConfig, GKDTrainer). When TRL promotes one out of `experimental`, only this table changes."""
    import importlib

    module, names = TRL_EXPERIMENTAL[name]
    loaded = importlib.import_module(module)
    return tuple(getattr(loaded, n) for n in names)


# --- TRL's bf16 cast of a quantized model's trainable weights (trl 1.16) -----------------------
# trl/trainer/{sft,dpo,reward,grpo,...}_trainer.py `__init__`: if the model is loaded in 4/8 bit,
#   for param in model.parameters(): if param.requires_grad: param.data = param.data.to(torch.bfloat16)

def keep_adapter_dtype(model: nn.Module, adapter) -> None:
    """Undo that cast: trainable weights go back to the adapter's compute dtype (float32 on CPU,
    where bf16 matmuls are slow or fail against float32 activations). Call after building a TRL
    trainer, before `train()` (`tunesmith.lifecycle` does)."""
    from .adapters.quantize import compute_dtype, is_quantized

    if not is_quantized(model):
        return
    dtype = compute_dtype(adapter)
    for p in model.parameters():
        if p.requires_grad and p.dtype != dtype:
            p.data = p.data.to(dtype)


# --- bitsandbytes' import-time warning about the `kernels` package (bitsandbytes 0.50.2) -------
# bitsandbytes/backends/cpu/ops.py, at import on AVX512-BF16 CPUs:
#   logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. ...")
# The kernel serves only the packed CPU path, which `set_bnb_cpu_packing` turns off.
BNB_KERNELS_LOGGER = "bitsandbytes.backends.cpu.ops"
BNB_KERNELS_MESSAGE = "Failed to load CPU gemm_4bit_forward"


class _DropMessage(logging.Filter):
    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)


def quiet_library_noise() -> None:
    """Drop library warnings about paths tunesmith does not use (called once, by `import tunesmith`)."""
    logger = logging.getLogger(BNB_KERNELS_LOGGER)
    if not any(isinstance(f, _DropMessage) for f in logger.filters):
        logger.addFilter(_DropMessage(BNB_KERNELS_MESSAGE))


# --- FSDP on CPU processes (accelerate 1.15) ---------------------------------------------------
# accelerate/state.py `AcceleratorState.__init__`: the ACCELERATE_USE_FSDP branch that sets
#   self.distributed_type = DistributedType.FSDP; self.fsdp_plugin = fsdp_plugin
# sits under `elif self.distributed_type in [MULTI_GPU, MULTI_MLU, MULTI_SDAA, MULTI_MUSA, MULTI_NPU,
# MULTI_XPU, MULTI_HPU, MULTI_NEURON]`: MULTI_CPU (gloo) is left out, so `accelerate launch` of an
# FSDP config on CPU trains DDP. torch's FSDP2 (`fully_shard`) itself runs on CPU over gloo, and the
# rest of accelerate's FSDP2 path (`fsdp2_prepare_model`, `get_state_dict`, `save_fsdp_model`) only
# reads `distributed_type`/`fsdp_plugin`. The wrapper below finishes what that branch would do,
# for a multi-process CPU run only (a GPU run never reaches it).

def fsdp_on_cpu() -> bool:
    """Make accelerate's `AcceleratorState` take FSDP on a multi-process CPU run when `accelerate
    launch` asked for it (env ACCELERATE_USE_FSDP, set from an FSDP config): the state accelerate
    1.15 gives a GPU run (distributed_type FSDP, the accelerator's fsdp_plugin). Idempotent;
    returns whether the wrapper is (now) installed."""
    import os

    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    original = AcceleratorState.__init__
    if getattr(original, "_tunesmith_fsdp_on_cpu", False):
        return True

    @functools.wraps(original)
    def __init__(self, *args, fsdp_plugin=None, **kwargs):
        fresh = not AcceleratorState._shared_state
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if (fresh and fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU
                and os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"):
            self.distributed_type = DistributedType.FSDP
            if self._mixed_precision != "no":
                fsdp_plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = self.distributed_type

    __init__._tunesmith_fsdp_on_cpu = True
    AcceleratorState.__init__ = __init__
    return True


# --- evaluate() of a model FSDP2 has not sharded (transformers 5.24, accelerate 1.15) -------------
# transformers/trainer.py `evaluation_loop`: with no model prepared yet and `self.is_fsdp_enabled`,
#   model = self.accelerator.prepare(model)
# accelerate/accelerator.py `prepare`: under FSDP2 "a model and optimizer must be passed together"
# (ValueError). That happens for the evaluation before training and after a resume that only
# reloads a finished checkpoint (core/training.py). Before training every process holds the whole,
# unsharded model, so the evaluation runs on it as a DDP run's does; `train()` later shards it
# with its optimizer (an evaluation before it leaves nothing prepared: `unprepare_after_evaluate`).

def fsdp2_evaluate_unsharded() -> bool:
    """Let `Accelerator.prepare(model)` of a lone, not yet sharded model under FSDP2 return it
    (on the accelerator's device) instead of raising. Idempotent; returns whether installed."""
    from accelerate import Accelerator

    original = Accelerator.prepare
    if getattr(original, "_tunesmith_unsharded", False):
        return True

    @functools.wraps(original)
    def prepare(self, *args, device_placement=None):
        from torch import nn
        from torch.distributed.fsdp import FSDPModule

        if (len(args) == 1 and isinstance(args[0], nn.Module) and self.is_fsdp2
                and not isinstance(args[0], FSDPModule) and not getattr(args[0], "_is_accelerate_prepared", False)):
            return args[0].to(self.device)
        return original(self, *args, device_placement=device_placement)

    prepare._tunesmith_unsharded = True
    Accelerator.prepare = prepare
    return True


# --- FSDP2 undone after training (torch 2.13) ---------------------------------------------------
# torch/distributed/fsdp/_fully_shard: `fully_shard(module)` swaps the module's class for
# `FSDP<Class>` (bases (FSDPModule, Class), _fsdp_init._apply_to_module), registers forward
# pre/post hooks (FSDPState.init: `_pre_forward_hook_handle`, `_post_forward_hook_handle`),
# state-dict pre-hooks that reshard (FSDPParamGroup._register_state_dict_hooks:
# `_module_to_pre_save/load_state_dict_hook_handle`), a load-state-dict post-hook per parameter
# (FSDPParam._post_load_hook_handle), and holds each parameter as a sharded DTensor;
# `register_fsdp_forward_method(module, "generate")` (transformers' Trainer, accelerate) sets an
# instance attribute `wrapped_method` around the original bound method (`__wrapped__`). There is no
# public inverse; tunesmith needs one once training is over, so that the stages' own saving (full
# save_pretrained, PEFT adapters), generation and evaluation see an ordinary module.

def unshard_fsdp2(model: nn.Module) -> bool:
    """Turn every `fully_shard`ed module under `model` back into its own class holding whole
    (all-gathered) parameters, in place. Collective: every process calls it, in the same order.
    Parameters shared by several modules (tied embeddings) stay shared. Returns whether there was
    anything to undo."""
    from torch import nn as tnn
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    sharded = [m for m in model.modules() if isinstance(m, FSDPModule)]
    if not sharded:
        return False
    for module in sharded:
        module.reshard()  # parameters back to their registered, sharded DTensors
    whole: dict[int, tnn.Parameter] = {}
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if isinstance(p, DTensor):
                if id(p) not in whole:
                    whole[id(p)] = tnn.Parameter(p.full_tensor().detach().clone(), requires_grad=p.requires_grad)
                module._parameters[name] = whole[id(p)]
    for module in sharded:
        state = module._get_fsdp_state()
        state._pre_forward_hook_handle.remove()
        state._post_forward_hook_handle.remove()
        for group in state._fsdp_param_groups:
            for handles in (group._module_to_pre_save_state_dict_hook_handle,
                            group._module_to_pre_load_state_dict_hook_handle):
                for handle in handles.values():
                    handle.remove()
                handles.clear()
            for fsdp_param in group.fsdp_params:
                fsdp_param._post_load_hook_handle.remove()
        module.__class__ = next(b for b in type(module).__bases__ if b is not FSDPModule)
        for name, value in list(module.__dict__.items()):  # register_fsdp_forward_method (generate)
            func = getattr(value, "__func__", None)
            code = getattr(func, "__code__", None)  # functools.wraps copied the name; the code keeps its own
            if code is not None and "register_fsdp_forward_method" in code.co_qualname:
                module.__dict__[name] = func.__wrapped__
    return True


# --- tied embeddings behind peft's trainable-token wrappers under FSDP2 (accelerate 1.15, peft 0.21.2)
# accelerate/utils/fsdp_utils.py `fsdp2_prepare_model`:
#   input_embed = model.get_input_embeddings(); output_embed = model.get_output_embeddings()
#   is_weights_tied = input_weight is not None and input_weight is output_weight
#   untied: fully_shard(input_embed) then fully_shard([final_norm, output_embed])
# With `trainable_token_indices` (tunesmith trains new chat-template token rows) both are
# peft.utils.other.TrainableTokensWrapper, whose `weight` is computed afresh (merged) on each access: the tie is missed, the shared
# weight is sharded twice and torch fails ("Invariant encountered: value was None"). Sharding the
# inner layers instead fails too: peft's TrainableTokensLayer reads `base_layer.weight` without
# calling the inner layer (whose FSDP hook would gather it). So while fsdp2_prepare_model runs,
# each wrapper shows its shared weight as `weight` (in its instance dict, not registered): the
# tie is seen and the two wrappers (base weight and token deltas) become one FSDP unit.

def _token_wrapped_weight(module):
    adapter = getattr(module, "token_adapter", None)
    base = getattr(adapter, "base_layer", None)
    return getattr(base, "weight", None)


def fsdp2_sees_tied_tokens() -> bool:
    """Let accelerate's FSDP2 preparation see embeddings tied behind peft's trainable-token
    wrappers (see above). Idempotent; returns whether the wrapper is (now) installed."""
    import accelerate.accelerator as acc

    original = acc.fsdp2_prepare_model
    if getattr(original, "_tunesmith_tied_tokens", False):
        return True

    @functools.wraps(original)
    def prepare(accelerator, model, *args, **kwargs):
        shown = []
        try:
            inp, out = model.get_input_embeddings(), model.get_output_embeddings()
        except (AttributeError, NotImplementedError):
            inp = out = None
        weight = _token_wrapped_weight(inp) if inp is not None else None
        if weight is not None and out is not None and _token_wrapped_weight(out) is weight:
            shown = [m for m in (inp, out) if "weight" not in m.__dict__]
            for m in shown:
                m.__dict__["weight"] = weight
        try:
            return original(accelerator, model, *args, **kwargs)
        finally:
            for m in shown:
                m.__dict__.pop("weight", None)

    prepare._tunesmith_tied_tokens = True
    acc.fsdp2_prepare_model = prepare
    return True


# --- the process group's collective timeout (torch 2.13) -----------------------------------------
# torch/distributed/distributed_c10d.py: `init_process_group(timeout=...)` stores it in the backend's
# options (`_get_default_group()._get_backend(device).options._timeout`); there is no public getter.

def process_group_timeout() -> float | None:
    """The default process group's collective timeout in seconds (None without one)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    group = dist.distributed_c10d._get_default_group()
    device = torch.device("cuda" if dist.get_backend() == "nccl" else "cpu")
    return group._get_backend(device).options._timeout.total_seconds()


# --- TRL's fused LM head off Triton devices (trl 1.16) -------------------------------------------
# trl/trainer/utils.py `add_fused_lm_head` replaces `model.forward` with `_fused_forward`, which for
# `fused_lm_head=True` runs the backbone, then `_ChunkedLogProbFunction` (trl/kernels/chunked_logprob.py)
# over EVERY position (`compact = _use_triton(device)` is False on CPU) in tiles, returning a
# `FusedCausalLMOutput` (log_probs, entropy, is_top1, ... zero where the label is -100, label_mask).
# SFTTrainer.compute_loss and DPOTrainer._compute_loss always ask for it.
PLAIN_HEAD_BYTES = 256 * 2 ** 20  # logits up to this size are materialized: the plain path
# the text-config fields TRL's fused head reads to scale or cap logits; a model with any keeps TRL's path
_SCALED_LOGITS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                  "logits_scaling")


def plain_head_applies(model: nn.Module) -> bool:
    """Whether `model` (a causal LM, unwrapped from PEFT) has a head its backbone's last hidden
    state feeds as is: a text model whose config neither scales nor caps its logits."""
    if getattr(model, "base_model", model) is model or model.get_output_embeddings() is None:
        return False
    text = model.config.get_text_config()
    return not any(getattr(text, name, None) is not None for name in _SCALED_LOGITS) and text is model.config


def logits_where_scored(model: nn.Module, labels, shift_labels=None, *args, **kwargs):
    """`model`'s backbone, then its LM head only at the positions whose label counts (as TRL's
    `_fused_forward`: the backbone, then the head's weight — PEFT's token wrapper gives the merged
    rows — here one matmul over the kept positions): (logits [kept, vocab], their labels [kept],
    mask [batch, positions]). `labels` are shifted here; `shift_labels` are used as given."""
    import torch

    kwargs["use_cache"] = False
    hidden = model.base_model(*args, **kwargs).last_hidden_state
    if shift_labels is None:
        hidden, labels = hidden[:, :-1], labels[:, 1:]
    else:
        labels = shift_labels
    labels = labels.to(hidden.device)
    mask = labels != -100
    head = model.get_output_embeddings()
    logits = torch.nn.functional.linear(hidden[mask].to(head.weight.device), head.weight, getattr(head, "bias", None))
    return logits, labels[mask].to(logits.device), mask


def plain_lm_head(model: nn.Module, outputs: tuple[str, ...] = ("log_probs",),
                  max_logits_bytes: int = PLAIN_HEAD_BYTES) -> bool:
    """Answer TRL's `fused_lm_head=True` calls from the model's own logits (log-softmax, gather),
    computed only at the positions whose label counts, when their float32 logits take at most
    `max_logits_bytes`; larger batches keep TRL's
    kernel, which never holds them. `outputs` are the per-token fields the trainer asked TRL for
    (as `add_fused_lm_head(outputs=...)`; the others are None, as TRL leaves them), with TRL's zeros
    where the label is -100. Call after building the trainer (TRL patches the model then); returns
    whether the model carried TRL's head."""
    from trl.trainer.utils import FusedCausalLMOutput

    import torch

    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    fused = target.__dict__.get("forward")
    if fused is None or getattr(fused, "tunesmith_plain", False):
        return False
    if not plain_head_applies(target):
        return False  # logits scaled or capped (TRL applies those itself), or a vision-language model: TRL's path
    vocab = target.get_output_embeddings().weight.shape[0]

    def forward(*args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        scored = shift_labels if shift_labels is not None else labels
        positions = int(scored.ne(-100).sum()) if scored is not None else (ids.numel() if ids is not None else 0)
        if not fused_lm_head or ids is None or scored is None or positions * vocab * 4 > max_logits_bytes \
                or kwargs.get("output_router_logits"):
            return fused(*args, fused_lm_head=fused_lm_head, labels=labels, shift_labels=shift_labels,
                         num_items_in_batch=num_items_in_batch, **kwargs)
        # the head only where a label counts (prompt and padding positions are zeros in every field, as in
        # TRL's kernel): in SFT on chat rows most positions are prompt, so this skips most of the head's
        # matmul, its [tokens, vocab] logits and their log-softmax
        logits, picked, mask = logits_where_scored(target, labels, shift_labels, *args, **kwargs)
        logp = logits.float().log_softmax(-1)

        def spread(values: torch.Tensor) -> torch.Tensor:  # [kept] -> [batch, seq], zeros elsewhere
            return values.new_zeros(mask.shape).masked_scatter(mask.to(values.device), values)

        log_probs = spread(logp.gather(-1, picked[:, None])[:, 0])
        extra = {}
        if "log_sum_sq_probs" in outputs:
            extra["log_sum_sq_probs"] = spread(torch.logsumexp(2 * logp, -1))
        with torch.no_grad():  # metrics
            if "entropy" in outputs:
                extra["entropy"] = spread(-(logp.exp() * logp).sum(-1))
            if "is_top1" in outputs:
                extra["is_top1"] = spread(logp.argmax(-1) == picked)
            if "mean_logits" in outputs:
                extra["mean_logits"] = spread(logits.float().mean(-1))
        mask = mask.to(log_probs.device)
        loss = -log_probs.sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        return FusedCausalLMOutput(loss=loss, log_probs=log_probs, label_mask=mask, **extra)

    forward.tunesmith_plain = True
    forward.__signature__ = inspect.signature(fused)
    target.forward = forward
    return True


# --- glibc's malloc gives freed memory back every step (glibc 2.36) -------------------------------
# malloc/malloc.c: a block of at least `mmap_threshold` (128 KiB, raised as such blocks are freed up
# to 32 MiB) gets its own mmap and is unmapped on free; free memory at the heap's top beyond
# `trim_threshold` (twice the mmap threshold) is returned with sbrk. A training step allocates and
# frees the same tensors (activations, logits, gradients) every step, so their pages are new each
# time: the kernel faults and zeroes every 4 KiB page again. Setting both thresholds (mallopt)
# keeps freed blocks below 32 MiB in the heap for reuse; larger ones still go back.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
HEAP_MMAP_THRESHOLD = 32 * 2 ** 20  # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
HEAP_TRIM_THRESHOLD = 2 ** 31 - 1  # mallopt takes a C int: ~2 GiB of free heap top kept
_USER_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
_heap_kept: dict | None = None


def heap_choice_is_users() -> str | None:
    """Why the allocator is left as it is: the user set glibc's malloc tunables or preloads another
    allocator (jemalloc, tcmalloc) — or None."""
    import os

    if any(os.environ.get(name) for name in _USER_MALLOC_ENV) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return "the environment sets glibc's malloc tunables"
    if os.environ.get("LD_PRELOAD", "").strip():
        return f"LD_PRELOAD={os.environ['LD_PRELOAD']}"
    return None


def keep_freed_heap() -> dict | None:
    """Make this process's glibc malloc keep freed memory for reuse (see above); once per process.
    Returns the settings for environment.json ({"mmap_threshold", "trim_threshold"}), or
    {"left": why} where the user chose the allocator, or None off glibc."""
    global _heap_kept
    if _heap_kept is not None:
        return _heap_kept
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    why = heap_choice_is_users()
    if why is not None:
        _heap_kept = {"left": why}
        return _heap_kept
    libc = ctypes.CDLL(None)
    if not (libc.mallopt(M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD)):
        return None
    _heap_kept = {"mmap_threshold": HEAP_MMAP_THRESHOLD, "trim_threshold": HEAP_TRIM_THRESHOLD}
    return _heap_kept
