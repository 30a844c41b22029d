"""Loading model folders and tokenizers: one place each. Models safely (safetensors only, no
remote code unless asked); tokenizers with one clear error and a pad token."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import UserError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def check_model_folder(path: str | os.PathLike, allow_pickle: bool = False) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise UserError("model folder not found", file=p, fix="give a local folder written by save_pretrained")
    if not (p / "config.json").exists():
        if (p / "adapter_config.json").exists():  # every stage resolves these first (adapters.chain)
            raise UserError("is an adapter folder, not a model folder", file=p,
                            fix="give it as a stage's model.path (loaded on its recorded base), or merge it "
                                "first: tunesmith merge ADAPTER OUT")
        raise UserError("not a model folder: config.json is missing", file=p)
    has_safe = any(p.glob("*.safetensors")) or (p / "model.safetensors.index.json").exists()
    has_pickle = any(f.suffix in PICKLE_SUFFIXES for f in p.iterdir())
    if not has_safe and has_pickle and not allow_pickle:
        raise UserError("holds only pickle weights (.bin/.pt), which can run code when loaded; refused",
                        file=p, fix="convert to safetensors, or set model.allow_pickle: true (--model.allow_pickle true) if you trust the source")
    if not has_safe and not has_pickle:
        raise UserError("holds no weights (*.safetensors)", file=p)
    for f in _safetensors_files(p):
        check_safetensors(f)
    return p


DAMAGED_FIX = "the file is damaged; re-save or re-download the model"


def _safetensors_files(folder: Path) -> list[Path]:
    """The folder's safetensors files: the shards its index names (each must be there), else
    every *.safetensors file in it."""
    index = folder / "model.safetensors.index.json"
    if not index.exists():
        return sorted(folder.glob("*.safetensors"))
    try:
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"cannot read the shard index: {str(e).splitlines()[0][:160]}", file=index,
                        fix=DAMAGED_FIX) from None
    for name in shards:
        if not (folder / name).is_file():
            raise UserError(f"shard {name}, named in {index.name}, is missing", file=folder / name,
                            fix="re-save or re-download the model (every shard)")
    return [folder / name for name in shards]


def _reason(e: BaseException) -> str:
    msg = (str(e).splitlines() or [type(e).__name__])[0]
    return msg.removeprefix("Error while deserializing header: ")[:160]


def check_safetensors(path: str | os.PathLike) -> None:
    """Read a safetensors file's header (a few kB, no tensor data): a truncated, overwritten or
    non-safetensors file is refused here, naming it, before anything else loads."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy"):  # "numpy": opening imports no torch
            pass
    except (SafetensorError, OSError) as e:
        raise UserError(f"cannot read the weights: {_reason(e)}", file=path, fix=DAMAGED_FIX) from None


def load_model(path: str | os.PathLike, auto_class: Any = None, *, trust_remote_code: bool = False,
               allow_pickle: bool = False, dtype: Any = None, **kwargs: Any):
    """The one safe model loader: `auto_class.from_pretrained` (default AutoModelForCausalLM) on a
    checked local folder, safetensors only unless `allow_pickle`, no custom code unless
    `trust_remote_code`, fp32 unless `dtype` says otherwise. Every model tunesmith loads comes here."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    auto_class = auto_class or AutoModelForCausalLM
    p = check_model_folder(path, allow_pickle)
    try:
        return auto_class.from_pretrained(str(p), dtype=dtype or torch.float32, trust_remote_code=trust_remote_code,
                                          use_safetensors=not allow_pickle, **kwargs)
    except SafetensorError as e:  # damaged in a way the header check does not see
        files = _safetensors_files(p)
        raise UserError(f"cannot read the weights: {_reason(e)}", file=files[0] if len(files) == 1 else p,
                        fix=DAMAGED_FIX) from None
    except ValueError as e:
        msg = str(e).splitlines()[0]
        if "trust_remote_code" in msg:
            raise UserError("this model needs custom code to load", file=p,
                            fix="pass --model.trust_remote_code true only if you trust its author") from None
        kind = {"AutoModelForCausalLM": "a causal LM", "AutoModelForSequenceClassification": "a classifier"}
        raise UserError(f"cannot load as {kind.get(auto_class.__name__, 'a model')}: {msg}", file=p) from None


def load_peft(model: Any, folder: str | os.PathLike, *, adapter_name: str = "default", trainable: bool = False,
              allow_pickle: bool = False):
    """The one adapter loader: `PeftModel.from_pretrained(model, folder)` on a checked adapter folder
    (adapter_config.json and safetensors weights, header read first; pickle `adapter_model.bin` only
    with `allow_pickle`). Every adapter tunesmith loads comes here."""
    from peft import PeftModel

    p = Path(folder)
    if not (p / "adapter_config.json").is_file():
        raise UserError("not an adapter folder: adapter_config.json is missing", file=p,
                        fix="pass a folder written by save_adapter or PeftModel.save_pretrained")
    safe = p / "adapter_model.safetensors"
    if safe.is_file():
        check_safetensors(safe)
    elif (p / "adapter_model.bin").is_file() and not allow_pickle:
        raise UserError("holds only pickle adapter weights (adapter_model.bin), which can run code when loaded; "
                        "refused", file=p, fix="re-save it with safetensors, or set model.allow_pickle: true if you "
                                               "trust the source")
    elif not (p / "adapter_model.bin").is_file():
        raise UserError("holds no adapter weights (adapter_model.safetensors)", file=p)
    return PeftModel.from_pretrained(model, str(p), adapter_name=adapter_name, is_trainable=trainable)


def load_causal_lm(path: str | os.PathLike, trust_remote_code: bool = False, allow_pickle: bool = False,
                   dtype=None):
    """AutoModelForCausalLM from a local folder (`load_model`)."""
    return load_model(path, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, dtype=dtype)


def load_tokenizer(path: str | os.PathLike, *, field: str = "model.tokenizer", trust_remote_code: bool = False,
                   need_eos: bool = False, need_pad: bool = False):
    """The one tokenizer loader: a local folder (or a Hub id when online), one clear line when it is
    not one. A tokenizer without a pad token gets its EOS (else UNK) token as pad. `need_eos` (documents
    are separated by EOS) and `need_pad` (batches are padded) refuse a tokenizer that lacks them."""
    from transformers import AutoTokenizer

    p = Path(path)
    try:
        tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        if not p.exists():
            raise UserError("tokenizer folder not found", file=p, field=field,
                            fix="point at a folder with tokenizer.json or tokenizer_config.json") from None
        raise UserError(f"cannot load a tokenizer from this folder: {str(e).splitlines()[0][:160]}", file=p,
                        field=field, fix="point at a folder with tokenizer.json or tokenizer_config.json") from None
    if need_eos and tok.eos_token is None:
        raise UserError("tokenizer has no EOS token, needed to separate documents", file=p, field=field)
    if tok.pad_token is None and (tok.eos_token or tok.unk_token):
        tok.pad_token = tok.eos_token or tok.unk_token
    if need_pad and tok.pad_token is None:
        raise UserError("tokenizer has neither a pad nor an EOS token", file=p, field=field,
                        fix="add a pad token to the tokenizer")
    return tok
