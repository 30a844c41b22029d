"""A tiny base model (session), a service store with two API keys, and a running service."""
from __future__ import annotations

import pytest
from service._service import ServiceProcess, create_key


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    from alignment._sft_fixtures import pretrained

    return pretrained("tiny", tmp_path_factory.mktemp("svc-base"))


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("svc-store")
    return {"root": root, "alice": create_key(root, "alice"), "bob": create_key(root, "bob")}


@pytest.fixture(scope="session")
def service(store, tiny_base):
    broken = store["root"].parent / "broken-model"  # a folder that is no model: its jobs fail
    broken.mkdir(exist_ok=True)
    proc = ServiceProcess(store["root"], tiny_base, workers=2, extra=["--model", f"broken={broken}", "--max-file-mb", "0.05"]).start()
    yield proc
    proc.stop()
