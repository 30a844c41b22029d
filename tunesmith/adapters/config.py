"""The `adapter:` block every training stage embeds.

One declaration: the method (LoRA and its variants, QLoRA, IA3, prompt/prefix tuning, or
full fine-tuning), its hyperparameters, which modules it touches, how the base is loaded
(4-bit, 8-bit or full precision) and the memory switches (gradient checkpointing, 8-bit
or paged optimizers). Stage configs hold it as
`adapter: AdapterConfig = Field(default_factory=AdapterConfig)`.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from ..core.config import Section

Method = Literal["lora", "qlora", "dora", "rslora", "pissa", "olora", "lora_fa", "vera", "ia3",
                 "prompt_tuning", "prefix_tuning", "full"]
Task = Literal["causal_lm", "seq_cls"]

# methods implemented as a peft LoraConfig (with a variant switch)
LORA_FAMILY = ("lora", "qlora", "dora", "rslora", "pissa", "olora", "lora_fa")
PROMPT_METHODS = ("prompt_tuning", "prefix_tuning")
# how each LoRA variant initializes its weights when `init` is left unset
METHOD_INIT = {"pissa": "pissa", "olora": "olora"}


def _error(message: str) -> PydanticCustomError:
    return PydanticCustomError("adapter_config", message)


class AdapterConfig(Section):
    """How a stage adapts its base model. Recipes, overrides and `coerce(AdapterConfig, {...})`
    report bad values as a `UserError`; direct construction raises pydantic's ValidationError.
    Example:

    >>> AdapterConfig(method="qlora", rank=8).resolved_quantize()
    'nf4'
    """

    method: Method = Field("lora", description=(
        "adapter method: lora | qlora (LoRA on a 4-bit base) | dora | rslora | pissa | olora | "
        "lora_fa (LoRA with A frozen) | vera | ia3 | prompt_tuning | prefix_tuning | full"))
    task: Task = Field("causal_lm", description=(
        "model head: causal_lm (language modeling) or seq_cls (classification/regression "
        "head, kept fully trainable)"))
    rank: int = Field(16, ge=1, description="LoRA/VeRA rank r")
    alpha: float | None = Field(None, gt=0, description="LoRA alpha; null means 2 x rank")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="dropout on the adapter input")
    target_modules: list[str] | None = Field(None, description=(
        "module names to adapt (suffixes such as q_proj or mlp.down_proj); null means every "
        "linear layer of the transformer blocks, found automatically, heads excluded"))
    modules_to_save: list[str] | None = Field(None, description=(
        "modules trained fully and saved with the adapter; null means the task head "
        "(classifier/score and pooler for seq_cls, nothing for causal_lm)"))
    trainable_tokens: Literal["auto", "none"] | list[str] = Field("auto", description=(
        "LoRA family: tokens whose embedding (and untied LM-head) rows also train, saved in the "
        "adapter (peft trainable_token_indices): auto (sft: the chat template's special tokens, "
        "e.g. <|im_start|> <|im_end|>; other stages: none) | none | a list of tokens"))
    layers: list[int] | None = Field(None, description=(
        "indices of the transformer layers to adapt; null means all layers"))
    init: Literal["default", "gaussian", "pissa", "pissa_fast", "olora", "orthogonal"] | None = Field(
        None, description=(
            "LoRA weight init; null means the method's own (pissa for pissa, olora for olora, "
            "B=0 otherwise); pissa_fast uses a 16-iteration randomized SVD"))
    num_virtual_tokens: int = Field(20, ge=1, description="prompt/prefix tuning: virtual tokens")
    quantize: Literal["auto", "none", "nf4", "fp4", "int8"] = Field("auto", description=(
        "base weights: auto (nf4 for qlora, none otherwise) | none | nf4 | fp4 (4-bit) | "
        "int8 (8-bit), via bitsandbytes"))
    double_quant: bool = Field(True, description="4-bit: also quantize the quantization constants")
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description=(
        "dtype of 4-bit matmuls and adapter weights; auto means bfloat16 on a GPU that supports "
        "it, float32 otherwise"))
    optimizer: Literal["adamw", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit"] = Field(
        "adamw", description="optimizer: adamw (torch) or bitsandbytes 8-bit / paged AdamW")

    @field_validator("init")
    @classmethod
    def _check_init(cls, init: str | None, info: ValidationInfo) -> str | None:
        method = info.data.get("method")
        if init is None or method is None:
            return init
        if method in METHOD_INIT and init != METHOD_INIT[method]:
            raise _error(f"method {method} fixes init to {METHOD_INIT[method]}; use method lora "
                         f"with init {init}, or drop init")
        if method not in LORA_FAMILY:
            raise _error(f"init applies to LoRA methods only, not {method}; drop init")
        return init

    @field_validator("target_modules")
    @classmethod
    def _check_targets(cls, targets: list[str] | None, info: ValidationInfo) -> list[str] | None:
        method = info.data.get("method")
        if targets is not None and method in PROMPT_METHODS:
            raise _error(f"{method} adds virtual tokens and has no target_modules; drop them")
        if targets is not None and not targets:
            raise _error("is empty; list module names, or null for all linear layers")
        return targets

    @field_validator("trainable_tokens", mode="before")
    @classmethod
    def _check_tokens_word(cls, tokens: object) -> object:
        if isinstance(tokens, str) and tokens not in ("auto", "none"):
            raise _error(f"is auto, none or a list of tokens, not {tokens!r}; a single token is a "
                         f"list too: [{tokens}]")
        return tokens

    @field_validator("trainable_tokens")
    @classmethod
    def _check_tokens(cls, tokens: str | list[str], info: ValidationInfo) -> str | list[str]:
        method = info.data.get("method")
        if not isinstance(tokens, list) or method is None:
            return tokens
        if not tokens:
            raise _error("is empty; list tokens such as <|im_end|>, or use auto / none")
        if method == "full":
            raise _error("method full already trains every token row; drop trainable_tokens")
        if method not in LORA_FAMILY:
            raise _error(f"token rows train next to LoRA methods only (peft trainable_token_indices), "
                         f"not {method}; use none")
        return list(dict.fromkeys(tokens))

    @field_validator("quantize")
    @classmethod
    def _check_quantize(cls, quantize: str, info: ValidationInfo) -> str:
        method = info.data.get("method")
        if method == "full" and quantize not in ("auto", "none"):
            raise _error(f"method full trains every weight and cannot use a quantized base "
                         f"({quantize}); use method qlora, or quantize none")
        if method == "qlora" and quantize == "none":
            raise _error("method qlora needs a quantized base; use nf4, fp4 or int8, "
                         "or method lora")
        if method in PROMPT_METHODS + ("ia3", "vera") and quantize not in ("auto", "none"):
            raise _error(f"tunesmith quantizes bases for LoRA methods only, not {method}; "
                         "use quantize none")
        return quantize

    def resolved_quantize(self) -> str:
        """The base-weight format after resolving `auto`: none | nf4 | fp4 | int8."""
        if self.quantize == "auto":
            return "nf4" if self.method == "qlora" else "none"
        return self.quantize

    def resolved_alpha(self) -> float:
        return self.alpha if self.alpha is not None else 2.0 * self.rank

    def resolved_init(self) -> bool | str:
        """The value for peft's `init_lora_weights`."""
        init = self.init or METHOD_INIT.get(self.method, "default")
        return {"default": True, "pissa_fast": "pissa_niter_16"}.get(init, init)
