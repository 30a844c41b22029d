"""Serve and chat with a model, a run or an adapter: `tunesmith serve` (an OpenAI-compatible HTTP API,
see server.py) and `tunesmith chat` (a terminal chat, see chat.py); `engine.py` batches generation."""
from .engine import Engine, EngineError, Job, QueueFull, resolve_target, served_name

__all__ = ["Engine", "EngineError", "Job", "QueueFull", "create_app", "resolve_target", "run_server", "served_name"]


def create_app(*args, **kwargs):
    from .server import create_app as create

    return create(*args, **kwargs)


def run_server(*args, **kwargs):
    from .server import run_server as run

    return run(*args, **kwargs)
