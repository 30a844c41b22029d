"""`tunesmith serve --engine vllm`: the same OpenAI API served by vLLM's own server (GPU machines).

tunesmith resolves what it was given (a model folder, a run directory, an adapter folder, Hub ids)
to a base model folder plus named LoRA adapters, and starts `vllm.entrypoints.openai.api_server`
with `--enable-lora --lora-modules NAME=PATH`, so the base answers to its name and each adapter to
its NAME as with the default engine. vLLM's LoRA loader takes LoRA matrices only: an adapter that
also trains token rows (tunesmith's `adapter.trainable_tokens: auto` in sft) or a non-LoRA PEFT
method is refused with the fix (serve its merged model, or train with `trainable_tokens: none`).

    vllm_command("runs/sft", {"dpo": "runs/dpo"}, port=8000)
    # [python, -m, vllm.entrypoints.openai.api_server, --model, <base>, --served-model-name, base, ...]
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from ..core.errors import UserError
from .engine import resolve_target, served_name

LORA_TYPES = ("LORA",)


def _lora_rank(folder: Path) -> int:
    """The adapter's LoRA rank; an adapter vLLM cannot load is refused naming the folder."""
    cfg = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    if cfg.get("peft_type") not in LORA_TYPES or cfg.get("use_dora"):
        kind = "DoRA" if cfg.get("use_dora") else cfg.get("peft_type")
        raise UserError(f"is a {kind} adapter; vLLM serves LoRA adapters only", file=folder,
                        fix=f"serve its merged model (tunesmith merge {folder} OUT), or use the default engine")
    if cfg.get("trainable_token_indices") or cfg.get("modules_to_save"):
        raise UserError("trains token rows or whole modules besides its LoRA matrices, which vLLM's LoRA loader "
                        "does not load", file=folder,
                        fix=f"serve its merged model (tunesmith merge {folder} OUT), or train with "
                            "adapter.trainable_tokens: none")
    return int(cfg.get("r") or 8)


def vllm_command(model_or_run: str | os.PathLike, adapters: dict[str, str] | None = None, *,
                 name: str | None = None, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
                 dtype: str | None = None) -> list[str]:
    """The command that serves `model_or_run` (+ `adapters`, NAME -> folder or run) with vLLM."""
    base, found = resolve_target(model_or_run)
    loras = {n: Path(p) for n, p in found.items()}
    for adapter_name, path in (adapters or {}).items():
        adapter_base, adapter_found = resolve_target(path)
        if not adapter_found:
            raise UserError("is not an adapter folder or a run that trained one", file=path, field="adapter")
        if adapter_base.resolve() != base.resolve():
            raise UserError(f"was trained on {adapter_base}, not on the served base {base}", file=path,
                            field="adapter", fix="serve adapters of one base together")
        loras[adapter_name] = next(iter(adapter_found.values()))
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(base),
           "--served-model-name", name or served_name(base), "--host", host, "--port", str(port)]
    if loras:
        ranks = [_lora_rank(p) for p in loras.values()]
        cmd += ["--enable-lora", "--max-lora-rank", str(max(ranks)), "--max-loras", str(len(loras)),
                "--lora-modules", *[f"{n}={p.resolve()}" for n, p in loras.items()]]
    if api_key:
        cmd += ["--api-key", api_key]
    if dtype:
        cmd += ["--dtype", dtype]
    return cmd


def run_vllm(cmd: list[str]) -> int:
    """Run vLLM's server (the process is replaced by it: signals and exit code are vLLM's)."""
    if importlib.util.find_spec("vllm") is None:
        raise UserError("--engine vllm needs vLLM, which is not installed",
                        fix="pip install vllm on a CUDA machine, or use the default engine (transformers)")
    os.execv(cmd[0], cmd)
    return 0  # not reached
