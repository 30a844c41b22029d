"""One corpus and one 1-process reference run for every distributed test file."""
import pytest

from distributed._pretrain import pretrain_args, sft_args
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


@pytest.fixture(scope="session")
def sft_base(tmp_path_factory):
    from alignment._sft_fixtures import pretrained

    return pretrained("tiny", tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def sft_single(sft_base, tmp_path_factory):
    """The 1-process SFT run of an adapter method, trained once per session (DDP and FSDP share it)."""
    runs = {}

    def get(method: str):
        if method not in runs:
            runs[method] = tmp_path_factory.mktemp(f"sft-one-{method}") / "run"
            launch_cli(sft_args(sft_base, runs[method], method), 1)
        return runs[method]
    return get
