"""One corpus and one 1-process reference run for every distributed test file."""
import pytest

from distributed._pretrain import pretrain_args
from helpers import launch_cli, write_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("c") / "c.txt", 150)


@pytest.fixture(scope="session")
def single(corpus, tmp_path_factory):
    """8 steps on 1 process: the weights every multi-process run is compared with."""
    run = tmp_path_factory.mktemp("one") / "run"
    launch_cli(pretrain_args(corpus, run), 1)
    return run
