"""`tunesmith serve --engine vllm`: the vLLM command tunesmith builds from a run, a base and adapter
folders (vLLM itself needs a CUDA machine: not run here), and the refusals it owes the user."""
from __future__ import annotations

import json

import pytest

from helpers import assert_user_error, run_cli_here
from tunesmith.core.errors import UserError
from tunesmith.serve.vllm import vllm_command


def test_command_serves_the_base_and_every_adapter_as_lora_modules(tiny):
    cmd = vllm_command(tiny["base"], {"one": str(tiny["a1"]), "two": str(tiny["a2"])}, port=8123, api_key="k")
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[cmd.index("--model") + 1] == str(tiny["base"])
    assert cmd[cmd.index("--port") + 1] == "8123" and cmd[cmd.index("--api-key") + 1] == "k"
    i = cmd.index("--lora-modules")
    assert cmd[i + 1:i + 3] == [f"one={tiny['a1'].resolve()}", f"two={tiny['a2'].resolve()}"]
    rank = json.loads((tiny["a1"] / "adapter_config.json").read_text())["r"]
    assert cmd[cmd.index("--max-lora-rank") + 1] == str(rank) and cmd[cmd.index("--max-loras") + 1] == "2"
    plain = vllm_command(tiny["base"])
    assert "--enable-lora" not in plain and "--api-key" not in plain


def test_an_adapter_folder_serves_its_recorded_base_with_it(tiny):
    cmd = vllm_command(tiny["a1"])
    assert "--enable-lora" in cmd and cmd[cmd.index("--model") + 1] != str(tiny["a1"])


def test_token_rows_are_refused_with_the_fix(tiny, tmp_path):
    import shutil

    folder = tmp_path / "tok"
    shutil.copytree(tiny["a1"], folder)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    cfg["trainable_token_indices"] = [3, 4]
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="token rows.*trainable_tokens: none"):
        vllm_command(tiny["base"], {"tok": str(folder)})


def test_without_vllm_installed_the_cli_says_so(tiny, capsys):
    pytest.importorskip("fastapi")
    if __import__("importlib").util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    assert_user_error(run_cli_here(capsys, "serve", str(tiny["base"]), "--engine", "vllm"), "needs vLLM")
