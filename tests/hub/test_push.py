"""push() against a local fake Hub (tests/hub/fake_hub.py) that the real huggingface_hub
client talks to over HTTP: uploaded files, card metadata, privacy, revision, PRs, errors,
and that the token never lands in a file or in the output."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hub.fake_hub import TOKEN, subprocess_env
from huggingface_hub import ModelCard

from tunesmith.core.errors import UserError
from tunesmith.hub import push

REPO = Path(__file__).resolve().parents[2]
ADAPTER_FILES = {"adapter_config.json", "adapter_model.safetensors", "tunesmith_adapter.json"}
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}


def _push_in_subprocess(run: Path, config: dict, hub_url: str, home: Path, token: str | None = TOKEN):
    code = ("import json, sys\nfrom tunesmith.hub import push\nfrom tunesmith.core.errors import UserError\n"
            "try:\n"
            f"    r = push({str(run)!r}, json.loads(sys.argv[1]))\n"
            "except UserError as e:\n"
            "    print('error:', e, file=sys.stderr); sys.exit(2)\n"
            "print(json.dumps({'url': r.url, 'files': r.files, 'revision': r.revision}))\n")
    return subprocess.run([sys.executable, "-c", code, json.dumps(config)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=subprocess_env(hub_url, home, token))


def test_push_adapter_to_a_private_branch_as_a_user_would(sft_run, hub, tmp_path):
    """HF_ENDPOINT and HF_TOKEN from the environment, as after `hf auth login` / export."""
    proc = _push_in_subprocess(sft_run, {"repo": "tiny-sft", "private": True, "revision": "v1",
                                         "license": "mit", "base_model": "alice/nano"}, hub.url, tmp_path / "home")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    calls = [(r.method, r.path) for r in hub.requests]
    assert calls == [("GET", "/api/whoami-v2"), ("POST", "/api/repos/create"),
                     ("POST", "/api/models/alice/tiny-sft/branch/v1"), ("POST", "/api/validate-yaml"),
                     ("POST", "/api/models/alice/tiny-sft/preupload/v1"),
                     ("POST", "/api/models/alice/tiny-sft/commit/v1")]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in hub.requests)
    assert hub.requests[1].json() == {"name": "tiny-sft", "organization": "alice", "visibility": "private"}
    assert hub.requests[-1].headers["content-type"] == "application/x-ndjson"

    repo = hub.repos["alice/tiny-sft"]
    assert repo.private is True and repo.branches["main"] == {}
    files = repo.branches["v1"]
    assert set(result["files"]) == set(files)
    assert result["revision"] == "v1" and result["url"] == f"{hub.url}/alice/tiny-sft/tree/v1"
    report = {n for n in files if n.startswith("training_report/")}
    assert {"training_report/report.md", "training_report/report.html", "training_report/config.yaml",
            "training_report/results.json", "training_report/plots/loss.png"} <= report
    assert set(files) - report == ADAPTER_FILES | TOKENIZER_FILES | {"README.md"}
    assert files["adapter_model.safetensors"] == (sft_run / "model" / "adapter_model.safetensors").read_bytes()
    assert files["training_report/plots/loss.png"] == (sft_run / "plots" / "loss.png").read_bytes()
    # the uploaded adapter points at the Hub base, not at a folder on this machine
    assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == "alice/nano"
    assert json.loads(files["tunesmith_adapter.json"])["base"] == "alice/nano"
    card = ModelCard(files["README.md"].decode())
    assert card.data.base_model == "alice/nano" and card.data.library_name == "peft"
    assert card.data.license == "mit" and "tunesmith" in card.data.tags
    assert repo.commits[0]["summary"] == "Upload with tunesmith"

    # token hygiene: not in any file of the run, the output, or what was uploaded
    leaks = [p for p in sft_run.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaks == []
    assert TOKEN not in proc.stdout + proc.stderr
    assert not any(TOKEN.encode() in content for content in files.values())


def test_create_pr_leaves_the_branch_alone(sft_run, hub, online):
    result = push(sft_run, {"repo": "alice/tiny-sft", "create_pr": True, "report": False,
                            "commit_message": "Try a new adapter"}, token=TOKEN, endpoint=hub.url)
    repo = hub.repos["alice/tiny-sft"]
    assert hub.requests[-1].query == {"create_pr": ["1"]} and hub.requests[-1].path.endswith("/commit/main")
    assert result.pr_url == result.url == f"{hub.url}/alice/tiny-sft/discussions/1"
    assert repo.branches["main"] == {} and repo.pull_requests[0]["summary"] == "Try a new adapter"
    assert not any(f.startswith("training_report/") for f in result.files)
    assert repo.private is False   # public unless asked


def test_push_merged_model_loads_and_matches_the_adapter(sft_run, hub, online, tmp_path):
    from tunesmith.adapters.artifacts import load_adapter
    from transformers import AutoModelForCausalLM

    result = push(sft_run, {"repo": "alice/tiny-merged", "merged": True}, token=TOKEN, endpoint=hub.url)
    files = hub.repos["alice/tiny-merged"].branches["main"]
    assert not ADAPTER_FILES & set(files) and {"model.safetensors", "config.json"} <= set(files)
    assert ModelCard(files["README.md"].decode()).data.library_name == "transformers"
    assert "merge" in ModelCard(files["README.md"].decode()).data.tags
    assert set(result.files) == set(files)

    downloaded = tmp_path / "downloaded"
    for name, content in files.items():
        (downloaded / name).parent.mkdir(parents=True, exist_ok=True)
        (downloaded / name).write_bytes(content)
    merged = AutoModelForCausalLM.from_pretrained(downloaded).eval()
    adapter = load_adapter(sft_run / "model").eval()
    ids = torch.tensor([[5, 9, 17, 3, 42, 8]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapter(ids).logits, atol=1e-5, rtol=1e-5)


def test_pushing_twice_updates_the_same_repo(sft_run, hub, online):
    push(sft_run, {"repo": "alice/tiny-sft", "report": False}, token=TOKEN, endpoint=hub.url)
    push(sft_run, {"repo": "alice/tiny-sft", "report": False, "license": "mit"}, token=TOKEN, endpoint=hub.url)
    repo = hub.repos["alice/tiny-sft"]
    assert len(repo.commits) == 2
    assert yaml.safe_load(repo.branches["main"]["README.md"].decode().split("---")[1])["license"] == "mit"


def test_missing_token_is_a_clear_error(sft_run, hub, tmp_path):
    proc = _push_in_subprocess(sft_run, {"repo": "alice/x"}, hub.url, tmp_path / "home", token=None)
    assert proc.returncode == 2
    assert "no Hugging Face token" in proc.stderr and "HF_TOKEN" in proc.stderr and "hf auth login" in proc.stderr
    assert "Traceback" not in proc.stderr and hub.requests == []


def test_invalid_token_is_a_clear_error_without_the_token(sft_run, hub, online):
    bad = "hf_wrongTOKENvalue987654321"
    with pytest.raises(UserError) as e:
        push(sft_run, {"repo": "alice/x"}, token=bad, endpoint=hub.url)
    assert "rejected the token (HTTP 401)" in str(e.value) and bad not in str(e.value)
    assert [r.path for r in hub.requests] == ["/api/whoami-v2"] and hub.repos == {}


def test_foreign_namespace_is_refused(sft_run, hub, online):
    with pytest.raises(UserError, match=r"may not create the repository \(HTTP 403"):
        push(sft_run, {"repo": "bob/x", "report": False}, token=TOKEN, endpoint=hub.url)


def test_offline_mode_is_named(sft_run, hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match="HF_HUB_OFFLINE is set"):
        push(sft_run, {"repo": "alice/x"}, token=TOKEN, endpoint=hub.url)
    assert hub.requests == []


def test_unreachable_endpoint_is_named(sft_run, online):
    with pytest.raises(UserError, match="cannot reach the Hub to check the token") as e:
        push(sft_run, {"repo": "alice/x"}, token=TOKEN, endpoint="http://127.0.0.1:9")
    assert "127.0.0.1:9" in str(e.value) and TOKEN not in str(e.value)


def test_run_without_a_model_fails_before_any_call(pipeline_dir, hub, online):
    with pytest.raises(UserError, match="nothing to push"):
        push(pipeline_dir / "3-eval", {"repo": "alice/x"}, token=TOKEN, endpoint=hub.url)
    assert hub.requests == []
