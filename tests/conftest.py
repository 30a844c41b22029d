import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")
# one torch thread: the models here are tiny, and on a 2-core machine two threads are up to
# ~20x slower as soon as anything else runs (the DDP tests start two processes each)
os.environ.setdefault("OMP_NUM_THREADS", "1")
# measured decisions (train.dtype auto, sft.batching auto) go to a cache of this test session, not ~/.cache
os.environ.setdefault("TUNESMITH_CACHE_DIR", tempfile.mkdtemp(prefix="tunesmith-cache-"))

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real GLUE/SuperGLUE/corpora files beside the repo; tests skip if absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present on this machine")
    return SHARED
