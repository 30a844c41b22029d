import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # report_runs.py

from report_runs import copy_run, pipeline_runs  # noqa: E402


@pytest.fixture(scope="session")
def pipeline_dir(tmp_path_factory) -> Path:
    """pipe/1-pretrain, pipe/2-sft (LoRA adapter), pipe/3-eval: shared, read-only."""
    return pipeline_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture
def pipeline_copy(pipeline_dir, tmp_path) -> Path:
    """A private copy of the pipeline folder, free to write reports into."""
    return copy_run(pipeline_dir, tmp_path / "pipe")
