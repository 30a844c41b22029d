from pathlib import Path

import pytest

from report.report_runs import copy_run, pipeline_runs


@pytest.fixture(scope="session")
def pipeline_dir(tmp_path_factory) -> Path:
    """pipe/1-pretrain, pipe/2-sft (LoRA adapter), pipe/3-eval: shared, read-only."""
    return pipeline_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture
def pipeline_copy(pipeline_dir, tmp_path) -> Path:
    """A private copy of the pipeline folder, free to write reports into."""
    return copy_run(pipeline_dir, tmp_path / "pipe")
