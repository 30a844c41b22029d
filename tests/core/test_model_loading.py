"""One safe loading policy: every model tunesmith loads goes through core.modelio.load_model
(safetensors only unless allow_pickle, no custom code unless trust_remote_code)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tunesmith.core.errors import UserError
from tunesmith.core.modelio import load_model

PACKAGE = Path(__file__).resolve().parents[2] / "tunesmith"


def test_no_model_weights_are_loaded_outside_the_one_loader():
    """Models through load_model, adapters through load_peft (docstring examples and model-card text
    aside)."""
    calls = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "modelio.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            found = re.search(r"\b(AutoModel\w*|AutoPeftModel\w*|PeftModel)\.from_pretrained\(", line)
            before = line[:found.start()] if found else ""
            in_text = before.count('"') % 2 or before.count("'") % 2 or "`" in before  # a message, a doc
            if found and not in_text and not line.strip().startswith(("#", "AutoModel", "AutoPeftModel", "PeftModel")):
                calls.append(f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}")
    assert not calls, calls


@pytest.fixture
def pickle_only(tmp_path):
    from tunesmith.pretraining.presets import build_model

    folder = tmp_path / "m"
    build_model("llama", "nano").save_pretrained(folder)
    from safetensors.torch import load_file

    weights = load_file(folder / "model.safetensors")
    torch.save(weights, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


def test_pickle_weights_are_refused_unless_allowed(pickle_only):
    with pytest.raises(UserError, match="pickle") as e:
        load_model(pickle_only)
    assert "model.allow_pickle" in e.value.fix
    assert load_model(pickle_only, allow_pickle=True).config.model_type == "llama"


def test_a_reward_model_folder_and_an_eval_classifier_go_through_the_same_check(pickle_only):
    from tunesmith.alignment.rl import load_reward_model
    from tunesmith.eval.heads import load_classifier

    for load in (load_reward_model, load_classifier):
        with pytest.raises(UserError, match="pickle"):
            load(str(pickle_only))


def test_adapter_loader_refuses_pickle_and_damaged_weights(tmp_path):
    from tunesmith.adapters import AdapterConfig, apply
    from tunesmith.core.modelio import load_peft
    from tunesmith.pretraining.presets import build_model

    def base():
        torch.manual_seed(0)
        return build_model("llama", "nano", layers=1)
    folder = tmp_path / "a"
    apply(base(), AdapterConfig(rank=4)).save_pretrained(folder)
    assert load_peft(base(), folder) is not None
    (folder / "adapter_model.safetensors").write_bytes(b"\x00" * 7)
    with pytest.raises(UserError, match="adapter_model.safetensors: cannot read the weights"):
        load_peft(base(), folder)
    (folder / "adapter_model.safetensors").unlink()
    torch.save({}, folder / "adapter_model.bin")
    with pytest.raises(UserError, match="only pickle adapter weights.*model.allow_pickle"):
        load_peft(base(), folder)
