from pathlib import Path

import pytest

from hub.fake_hub import TOKEN, FakeHub
from report.report_runs import copy_run, pipeline_runs  # the same tiny runs as the report tests


@pytest.fixture(scope="session")
def pipeline_dir(tmp_path_factory) -> Path:
    return pipeline_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture
def sft_run(pipeline_dir, tmp_path) -> Path:
    return copy_run(pipeline_dir / "2-sft", tmp_path / "sft")


@pytest.fixture
def hub():
    with FakeHub(tokens={TOKEN: "alice"}) as server:
        yield server


@pytest.fixture
def online(monkeypatch):
    """The test session runs with HF_HUB_OFFLINE=1; pushes to the local fake Hub need it off."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)

