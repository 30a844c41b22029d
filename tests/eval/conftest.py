"""Fixtures for the evaluation tests: the shared GLUE/SuperGLUE folders and a nano causal LM."""
import json
from pathlib import Path

import pytest
import torch

from tunesmith.pretraining.presets import build_model
from tunesmith.pretraining.tokenizer import train_tokenizer


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The machine is 2 shared cores: one intra-op thread is several times faster than two
    threads contending with other processes (measured: 0.7 s vs 5 s per MiniLM step)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def glue_dir(shared_data: Path) -> Path:
    return shared_data / "glue"


@pytest.fixture(scope="session")
def superglue_dir(shared_data: Path) -> Path:
    return shared_data / "superglue"


@pytest.fixture(scope="session")
def nano_lm(tmp_path_factory, superglue_dir: Path):
    """(model, tokenizer, folder): a nano llama with a 512-token BPE trained on RTE text."""
    texts = []
    for line in open(superglue_dir / "RTE" / "train.jsonl", encoding="utf-8"):
        row = json.loads(line)
        texts += [row["premise"], row["hypothesis"]]
    tok = train_tokenizer(texts[:1000], vocab_size=512)
    torch.manual_seed(0)
    model = build_model("llama", "nano", vocab=len(tok)).eval()
    folder = tmp_path_factory.mktemp("nano_lm")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model, tok, folder
