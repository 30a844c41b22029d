"""Adapter folders on disk: stock PEFT layout (safetensors) plus a small tunesmith record.

A folder written by `save_adapter` loads with plain `PeftModel.from_pretrained(base, dir)`;
`tunesmith_adapter.json` beside it remembers what stock PEFT does not: the adapter block
(so the base can be re-loaded quantized as in training), the base folder and the number
of labels of a classification head. PiSSA/OLoRA adapters are converted on save into plain
LoRA adapters against the original base (peft's `path_initial_model_for_weight_conversion`).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from peft import PeftModel, get_peft_model_state_dict
from safetensors.torch import load_file, save_file
from torch import nn

from ..core.errors import UserError
from ..core.rundir import atomic_dir
from ..core.modelio import hub_source, load_peft, resolve_model
from .config import METHOD_INIT, AdapterConfig
from .quantize import load_base

RECORD = "tunesmith_adapter.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja")
# set on a PeftModel by `remember_initial_weights`: PiSSA/OLoRA weights before training
INITIAL_WEIGHTS_ATTR = "tunesmith_initial_adapter"


def remember_initial_weights(model: PeftModel, adapter: AdapterConfig) -> None:
    """Keep a copy of PiSSA/OLoRA's initial adapter tensors so the saved adapter can be converted to LoRA."""
    if adapter.resolved_init() in METHOD_INIT.values() or str(adapter.resolved_init()).startswith("pissa"):
        state = get_peft_model_state_dict(model)
        # every tensor, token rows and saved modules too: peft loads it as a second adapter of this config
        setattr(model, INITIAL_WEIGHTS_ATTR, {k: v.detach().clone() for k, v in state.items()})


def copy_tokenizer_files(source: Path, dest: Path) -> None:
    for name in TOKENIZER_FILES:
        if (source / name).is_file() and not (dest / name).exists():
            shutil.copy2(source / name, dest / name)


def save_adapter(model: nn.Module, output: str | os.PathLike, adapter: AdapterConfig, *,
                 base: str | os.PathLike | None = None) -> Path:
    """Write `model`'s adapter (or, for `method: full`, the whole model) to `output`, atomically.

    save_adapter(peft_model, "runs/x/adapter", AdapterConfig(), base="runs/nano/model")
    """
    output = Path(output)
    base_model = model.get_base_model() if isinstance(model, PeftModel) else model
    local = resolve_model(base, field=None) if base is not None else None  # a Hub id: its cached snapshot
    hub = hub_source(local) if local is not None else None  # (repo id, commit) of a Hub snapshot
    record = {"adapter": adapter.model_dump(mode="json"),
              "base": hub[0] if hub else (str(local.resolve()) if local is not None else None),
              "num_labels": base_model.config.num_labels if adapter.task == "seq_cls" else None}
    if hub:
        record["base_revision"] = hub[1]
    if isinstance(model, PeftModel) and local is not None and local.is_dir():
        for peft_cfg in model.peft_config.values():  # stock PEFT loads it from any working directory
            peft_cfg.base_model_name_or_path = str(local.resolve())  # (PEFT reads the base config while saving)
    with atomic_dir(output) as tmp:
        if not isinstance(model, PeftModel):
            model.save_pretrained(tmp, safe_serialization=True)
        elif getattr(model, INITIAL_WEIGHTS_ATTR, None) is not None:
            with tempfile.TemporaryDirectory() as scratch:
                initial = Path(scratch) / "initial"
                initial.mkdir()
                save_file(getattr(model, INITIAL_WEIGHTS_ATTR), initial / "adapter_model.safetensors")
                model.save_pretrained(tmp, path_initial_model_for_weight_conversion=str(initial))
            # peft's conversion keeps only lora_A/lora_B: put back the rest (trainable token rows,
            # modules_to_save), which the saved adapter_config still declares
            saved = load_file(tmp / "adapter_model.safetensors")
            rest = {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(model).items()
                    if "lora_" not in k and k not in saved}
            if rest:
                save_file({**saved, **rest}, tmp / "adapter_model.safetensors", metadata={"format": "pt"})
            record["converted_to_lora"] = True
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        if hub:  # recorded after saving: PEFT would contact the Hub while saving with an id in its config
            for path in tmp.rglob("adapter_config.json"):
                peft_cfg = json.loads(path.read_text())
                peft_cfg.update(base_model_name_or_path=hub[0], revision=hub[1])
                path.write_text(json.dumps(peft_cfg, indent=2, sort_keys=True) + "\n")
        if local is not None:
            copy_tokenizer_files(local, tmp)
        (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return output


def read_record(adapter_dir: str | os.PathLike) -> dict:
    """The tunesmith record of an adapter folder; a folder from stock PEFT gets a default one."""
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise UserError("not an adapter folder: adapter_config.json is missing", file=adapter_dir,
                        fix="pass a folder written by save_adapter or PeftModel.save_pretrained")
    if (adapter_dir / RECORD).is_file():
        return json.loads((adapter_dir / RECORD).read_text())
    peft = json.loads((adapter_dir / "adapter_config.json").read_text())
    task = "seq_cls" if peft.get("task_type") == "SEQ_CLS" else "causal_lm"
    return {"adapter": {"task": task}, "base": peft.get("base_model_name_or_path"), "num_labels": None}


def resolve_base(adapter_dir: Path, record: dict, base: str | os.PathLike | None) -> Path:
    path = base or record.get("base")
    if not path:
        raise UserError("the adapter does not record its base model", file=adapter_dir,
                        fix="pass base=PATH (the folder the adapter was trained on)")
    # a Hub id (at the recorded commit unless another base is given): its local snapshot
    return resolve_model(path, revision=None if base else record.get("base_revision"), field=None)


def load_adapter(adapter_dir: str | os.PathLike, base: str | os.PathLike | None = None, *,
                 trainable: bool = False, adapter_name: str = "default") -> PeftModel:
    """The base model (quantized as in training) with the adapter at `adapter_dir` on it.

    model = load_adapter("runs/x/adapter")  # base folder read from the adapter's record
    """
    adapter_dir = Path(adapter_dir)
    record = read_record(adapter_dir)
    cfg = AdapterConfig.model_validate(record["adapter"])
    model = load_base(resolve_base(adapter_dir, record, base), cfg, num_labels=record.get("num_labels"))
    return load_peft(model, adapter_dir, adapter_name=adapter_name, trainable=trainable)

