"""Helpers for the serve tests: tiny LoRA adapters that change the output, a uvicorn server in a thread."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

API_KEY = "test-key"


def make_adapter(base: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter on `base` whose B matrices are random (PEFT starts B at zero), so it changes the output."""
    import torch

    from tunesmith.adapters import AdapterConfig, apply
    from tunesmith.adapters.artifacts import save_adapter
    from tunesmith.core.modelio import load_model

    cfg = AdapterConfig(method="lora", rank=4, init="gaussian", trainable_tokens="none")
    torch.manual_seed(seed)
    model = apply(load_model(base), cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 2.0)
    return save_adapter(model, out, cfg, base=base)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)
