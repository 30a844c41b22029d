"""Hub ids wherever a model is named (core.modelio.resolve_model): the real huggingface_hub client
downloads from the local fake Hub (tests/hub/fake_hub.py) into a Hugging Face cache under tmp_path,
then works from that cache offline. huggingface_hub reads HF_ENDPOINT, HF_HUB_CACHE, HF_HUB_OFFLINE
and the token path once, at import: the `hf` fixture patches those `huggingface_hub.constants` (and
sets the variables for anything that reads them later)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hub.fake_hub import TOKEN, FakeHub

from tunesmith.core import modelio
from tunesmith.core.errors import UserError
from tunesmith.core.modelio import check_model_folder, hub_id_of, load_tokenizer, parse_hub_id, resolve_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny saved llama + tokenizer folder (the SFT tests' `tiny` base)."""
    from alignment._sft_fixtures import pretrained

    return pretrained("tiny", tmp_path_factory.mktemp("bases"))


@pytest.fixture(scope="module")
def pickle_only(tiny, tmp_path_factory) -> dict[str, bytes]:
    import torch
    from safetensors.torch import load_file

    scratch = tmp_path_factory.mktemp("pickle") / "pytorch_model.bin"
    torch.save(load_file(tiny / "model.safetensors"), scratch)
    files = {f.name: f.read_bytes() for f in tiny.iterdir() if f.suffix != ".safetensors"}
    return {**files, "pytorch_model.bin": scratch.read_bytes()}


class Hf:
    """The test's Hugging Face setup: a fake Hub serving models, a cache, online/offline."""

    def __init__(self, monkeypatch, tmp_path: Path):
        from huggingface_hub import constants

        self.constants, self.monkeypatch, self.home = constants, monkeypatch, tmp_path / "hf"
        self.hub = FakeHub(tokens={TOKEN: "alice"}).__enter__()
        self.cache = self.home / "hub"
        url = self.hub.url
        for name, value in {"ENDPOINT": url, "HUGGINGFACE_CO_URL_TEMPLATE": url + "/{repo_id}/resolve/{revision}/{filename}",
                            "HF_HOME": str(self.home), "HF_HUB_CACHE": str(self.cache),
                            "HF_ASSETS_CACHE": str(self.home / "assets"), "HF_TOKEN_PATH": str(self.home / "token"),
                            "HF_STORED_TOKENS_PATH": str(self.home / "stored_tokens"), "HF_HUB_OFFLINE": False,
                            "HF_HUB_DISABLE_TELEMETRY": True}.items():  # TRL's trainer telemetry HEAD
            monkeypatch.setattr(constants, name, value)
        for name, value in {"HF_ENDPOINT": url, "HF_HOME": str(self.home), "HF_HUB_CACHE": str(self.cache),
                            "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        self.fresh_process()

    def fresh_process(self) -> None:
        """Forget what this process resolved (as a new process would)."""
        self.monkeypatch.setattr(modelio, "RESOLVED", {})
        self.monkeypatch.setattr(modelio, "_RESOLVED_PATHS", {})

    def offline(self, offline: bool = True) -> None:
        self.monkeypatch.setattr(self.constants, "HF_HUB_OFFLINE", offline)
        self.monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")

    def online(self) -> None:
        self.offline(False)

    def stop(self) -> None:
        """The Hub goes away: nothing answers on its port any more."""
        self.hub.__exit__(None, None, None)


@pytest.fixture
def hf(monkeypatch, tmp_path):
    setup = Hf(monkeypatch, tmp_path)
    yield setup
    setup.stop()


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


def test_hub_ids_are_told_from_local_paths(tmp_path):
    assert parse_hub_id("Qwen/Qwen3-0.6B") == ("Qwen/Qwen3-0.6B", None)
    assert parse_hub_id("alice/tiny@refs/pr/1") == ("alice/tiny", "refs/pr/1")
    for local in ("/abs/model", "./runs/sft", "runs/sft/model", "model", "~/m/x", "a--b/c", "alice/tiny@"):
        assert parse_hub_id(local) is None, local
    with pytest.raises(UserError, match="model folder not found"):  # no Hub look-up for a local-looking path
        check_model_folder(tmp_path / "missing")
    (tmp_path / "alice" / "tiny").mkdir(parents=True)
    assert resolve_model(tmp_path / "alice" / "tiny") == tmp_path / "alice" / "tiny"  # a local folder wins


def test_download_safetensors_only_then_offline_from_the_cache(hf, tiny):
    sha = hf.hub.serve_model("alice/tiny", {**{f.name: f.read_bytes() for f in tiny.iterdir()},
                                            "pytorch_model.bin": b"pickle", "onnx/model.onnx": b"onnx"})
    folder = resolve_model("alice/tiny")
    assert folder == hf.cache / "models--alice--tiny" / "snapshots" / sha
    names = {f.name for f in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names
    assert not {"pytorch_model.bin", "onnx"} & names
    assert not [f for f in hf.hub.downloads() if f.endswith((".bin", ".onnx"))]
    assert modelio.RESOLVED == {"alice/tiny": {"repo": "alice/tiny", "revision": "main", "commit": sha}}
    assert hub_id_of(folder) == "alice/tiny"
    calls = len(hf.hub.requests)
    assert load_tokenizer("alice/tiny").pad_token is not None and len(hf.hub.requests) == calls  # resolved once
    assert modelio.load_model("alice/tiny").config.model_type == "llama"

    hf.stop()                           # the Hub unreachable (online): the cached snapshot is used
    hf.fresh_process()
    assert resolve_model("alice/tiny") == folder
    hf.offline()                        # HF_HUB_OFFLINE=1: the cache only
    hf.fresh_process()
    assert check_model_folder("alice/tiny") == folder
    assert modelio.RESOLVED["alice/tiny"]["commit"] == sha


def test_offline_or_unreachable_and_not_cached_is_one_line(hf):
    hf.offline()
    with pytest.raises(UserError) as e:
        resolve_model("alice/nothing", field="teacher.path")
    text = _one_line(e)
    assert 'field "teacher.path"' in text and "alice/nothing" in text and "HF_HUB_OFFLINE=1" in text
    assert "not in the local Hugging Face cache" in text and "`hf download alice/nothing`" in text
    assert hf.hub.requests == []
    hf.online()
    hf.stop()
    with pytest.raises(UserError) as e:
        check_model_folder("alice/nothing")
    assert "Hub model alice/nothing: the Hub cannot be reached and the model is not in the local cache" in _one_line(e)


def test_not_found_gated_and_pickle_only_repos(hf, tiny, pickle_only, monkeypatch):
    with pytest.raises(UserError) as e:
        resolve_model("alice/nothing")
    assert "neither a local folder nor a model repo on the Hub (alice/nothing)" in _one_line(e)

    hf.hub.serve_model("meta/gated", tiny, gated=True, granted={"alice"})
    with pytest.raises(UserError) as e:
        resolve_model("meta/gated")
    text = _one_line(e)
    assert "meta/gated is gated" in text and "accept its license on https://huggingface.co/meta/gated" in text
    assert "hf auth login" in text and "HF_TOKEN" in text
    monkeypatch.setenv("HF_TOKEN", TOKEN)   # the user's token (HF_TOKEN, as after `hf auth login`) opens it
    assert (resolve_model("meta/gated") / "model.safetensors").is_file()
    last = [r for r in hf.hub.requests if r.path.startswith("/meta/gated/resolve/")][-1]
    assert last.method == "GET" and last.headers["authorization"] == f"Bearer {TOKEN}"

    hf.hub.serve_model("old/pickled", pickle_only)
    with pytest.raises(UserError) as e:
        resolve_model("old/pickled", field="model.path")
    text = _one_line(e)
    assert 'field "model.path"' in text and "old/pickled holds only pickle weights (pytorch_model.bin)" in text
    assert "pytorch_model.bin" not in hf.hub.downloads()


def test_revision_pins_a_commit_or_branch(hf, tiny):
    files = {f.name: f.read_bytes() for f in tiny.iterdir()}
    first = hf.hub.serve_model("alice/tiny", files)
    second = hf.hub.serve_model("alice/tiny", {**files, "extra.json": b"{}"})
    v1 = hf.hub.serve_model("alice/tiny", {**files, "v1.json": b"{}"}, branch="v1")
    pinned = resolve_model(f"alice/tiny@{first}")
    assert pinned.name == first and not (pinned / "extra.json").exists()
    assert resolve_model("alice/tiny").name == second and (resolve_model("alice/tiny") / "extra.json").is_file()
    assert resolve_model("alice/tiny@v1").name == v1
    assert modelio.RESOLVED[f"alice/tiny@{first}"] == {"repo": "alice/tiny", "revision": first, "commit": first}
    assert modelio.RESOLVED["alice/tiny@v1"]["commit"] == v1
    with pytest.raises(UserError, match="revision nope does not exist"):
        resolve_model("alice/tiny@nope")
    hf.offline()                        # a pinned commit is found in the cache offline
    hf.fresh_process()
    assert resolve_model(f"alice/tiny@{first}") == pinned


def test_sft_on_a_hub_model_records_repo_and_commit(hf, tiny, tmp_path):
    import tunesmith
    from huggingface_hub import ModelCard

    from tunesmith.hub import model_card

    sha = hf.hub.serve_model("alice/tiny", tiny)
    run = tmp_path / "sft"
    tunesmith.sft(model={"path": "alice/tiny"}, tasks={"names": ["add"], "train_rows": 8, "eval_rows": 2},
                  train={"max_steps": 1, "batch_size": 4, "dtype": "fp32"}, sft={"max_length": 64},
                  run={"dir": str(run), "sample_tokens": 0})
    env = json.loads((run / "environment.json").read_text())
    assert env["models"] == {"alice/tiny": {"repo": "alice/tiny", "revision": "main", "commit": sha}}
    record = json.loads((run / "model" / "tunesmith_adapter.json").read_text())
    assert record["base"] == "alice/tiny" or hub_id_of(record["base"]) == "alice/tiny"
    card = model_card(run, {"repo": "alice/tiny-sft"})
    assert ModelCard(card).data.base_model == "alice/tiny"
    assert f"[`alice/tiny`](https://huggingface.co/alice/tiny) at commit [`{sha[:12]}`]" in card

    # pushed, then named by its Hub id in the next stage: the adapter repo is downloaded, merged into
    # its base (itself a Hub id) in huggingface_hub's assets cache, never inside the snapshot
    from tunesmith.adapters.chain import model_folder
    from tunesmith.hub import push

    push(run, {"repo": "alice/tiny-sft", "report": False}, token=TOKEN, endpoint=hf.hub.url)
    pushed = hf.hub.repos["alice/tiny-sft"].branches["main"]
    assert json.loads(pushed["adapter_config.json"])["base_model_name_or_path"] == "alice/tiny"
    hf.hub.serve_model("alice/tiny-sft", pushed)
    hf.fresh_process()
    merged = model_folder("alice/tiny-sft", "teacher.path")
    assert merged.is_relative_to(hf.home / "assets" / "tunesmith" / "merged") and (merged / "config.json").is_file()
    assert {m["repo"] for m in modelio.RESOLVED.values()} == {"alice/tiny-sft", "alice/tiny"}
    assert model_folder("alice/tiny-sft") == merged    # reused

