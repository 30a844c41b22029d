"""A tiny base model with two LoRA adapters, and a live server (uvicorn in a thread) over them."""
from __future__ import annotations

import pytest
from serve._fixtures import API_KEY, LiveServer, make_adapter


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict:
    from alignment._sft_fixtures import pretrained

    root = tmp_path_factory.mktemp("serve")
    base = pretrained("tiny", root)
    return {"base": base, "a1": make_adapter(base, root / "ad1" / "adapter", 1),
            "a2": make_adapter(base, root / "ad2", 2), "root": root}


@pytest.fixture(scope="session")
def server(tiny):
    """The tiny base (`base-tiny`), adapter `ad1` (a run's adapter/ folder) and adapter `two`."""
    from tunesmith.serve import Engine, create_app

    engine = Engine.load(tiny["a1"], {"two": tiny["a2"]}, max_batch=16, max_queue=64)
    with LiveServer(create_app(engine, api_key=API_KEY, default_max_tokens=8)) as live:
        yield live


@pytest.fixture
def client(server):
    import openai

    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)
