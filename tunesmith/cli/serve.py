"""`tunesmith serve` (an OpenAI-compatible HTTP server) and `tunesmith chat` (a terminal chat)."""
from __future__ import annotations

import os
import sys

from ..core.errors import UserError
from .flags import command, named_values, no_extra

SERVE_USAGE = ("tunesmith serve MODEL_OR_RUN [--adapter NAME=PATH ...] [--host H] [--port P] [--api-key KEY] "
               "[--max-batch N] [--max-queue N] [--timeout S] [--max-tokens N] [--dtype D] [--device cpu|cuda] "
               "[--engine transformers|vllm]")
CHAT_USAGE = ("tunesmith chat MODEL_OR_RUN [--adapter PATH] [--system TEXT] [--max-new-tokens N] "
              "[--temperature T] [--top-p P] [--compare BASE]")


def _adapters(specs: list[str] | None) -> dict[str, str]:
    return named_values(specs, "--adapter", "NAME=PATH", "write --adapter NAME=ADAPTER_DIR")


def _cmd_serve(args, extra: list[str]) -> int:
    no_extra(extra, SERVE_USAGE)
    api_key = args.api_key or os.environ.get("TUNESMITH_API_KEY") or None
    if args.engine == "vllm":  # vLLM's own OpenAI server, with the adapters as LoRA modules
        from ..serve.vllm import run_vllm, vllm_command

        return run_vllm(vllm_command(args.model_or_run, _adapters(args.adapter), name=args.name, host=args.host,
                                     port=args.port, api_key=api_key, dtype=args.dtype))
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise UserError(f"tunesmith serve needs FastAPI and uvicorn ({e.name} is missing)",
                        fix="pip install 'tunesmith[serve]'") from None
    from ..serve import Engine, run_server

    engine = Engine.load(args.model_or_run, _adapters(args.adapter), name=args.name, dtype=args.dtype,
                         device=args.device, max_batch=args.max_batch, max_queue=args.max_queue)
    where = f"http://{args.host}:{args.port}/v1"
    print(f"serving {', '.join(engine.models)} at {where}" + (" (API key required)" if api_key else ""),
          file=sys.stderr)
    run_server(engine, host=args.host, port=args.port, api_key=api_key, request_timeout=args.timeout,
               default_max_tokens=args.max_tokens, log_level="warning" if args.quiet else "info")
    return 0


def _cmd_chat(args, extra: list[str]) -> int:
    no_extra(extra, CHAT_USAGE)
    from ..serve.chat import chat_loop, load_chat_model
    from ..serve.engine import resolve_target, served_name

    model, tok = load_chat_model(args.model_or_run, args.adapter, dtype=args.dtype)
    base, found = resolve_target(args.model_or_run)
    name = served_name(args.adapter) if args.adapter else (next(iter(found), None) or served_name(base))
    compare = None
    if args.compare:  # the base (or any model) answering beside the fine-tune
        other_model, other_tok = load_chat_model(args.compare, dtype=args.dtype)
        other_base, other_found = resolve_target(args.compare)
        other_name = next(iter(other_found), None) or served_name(other_base)
        compare = (other_model, other_tok, other_name if other_name != name else f"{other_name} (compare)")
    return chat_loop(model, tok, system=args.system, max_new_tokens=args.max_new_tokens,
                     temperature=args.temperature, top_p=args.top_p, name=name, compare=compare)


def add_serve(sub) -> None:
    s = command(sub, "serve", "serve a model, run or adapter over an OpenAI-compatible HTTP API",
                usage=SERVE_USAGE,
                description="serve a model folder, a run directory or an adapter folder (its base + the adapter) "
                            "over an OpenAI-compatible HTTP API: /v1/models, /v1/chat/completions, /v1/completions "
                            "(streaming too), /v1/adapters (load an adapter while serving), /health, /metrics. The "
                            "base answers to its folder name, each adapter to its NAME.")
    s.add_argument("model_or_run", metavar="MODEL_OR_RUN")
    s.add_argument("--adapter", action="append", metavar="NAME=PATH", help="serve this adapter too (repeatable)")
    s.add_argument("--name", help="the name the base answers to (default: its folder name)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--api-key", help="require `Authorization: Bearer KEY` (default: env TUNESMITH_API_KEY)")
    s.add_argument("--max-batch", type=int, default=16, help="most sequences in one generate call (default 16)")
    s.add_argument("--max-queue", type=int, default=64, help="queued requests before answering 503 (default 64)")
    s.add_argument("--timeout", type=float, default=300.0, help="seconds a request may take (default 300)")
    s.add_argument("--max-tokens", type=int, default=256, help="max_tokens when a request gives none (default 256)")
    s.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="weights dtype (default float32)")
    s.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    s.add_argument("--engine", choices=["transformers", "vllm"], default="transformers",
                   help="transformers (default; CPU or GPU) or vllm (vLLM's OpenAI server with the adapters as "
                        "LoRA modules; needs vLLM on a CUDA machine)")
    s.set_defaults(func=_cmd_serve)
    c = command(sub, "chat", "chat with a model, run or adapter in the terminal", usage=CHAT_USAGE,
                description="an interactive chat that streams tokens, applies the chat template and keeps the "
                            "conversation; commands: /reset, /system TEXT, /exit (or Ctrl-D)")
    c.add_argument("model_or_run", metavar="MODEL_OR_RUN")
    c.add_argument("--adapter", metavar="PATH", help="an adapter folder (or run) to put on the base")
    c.add_argument("--system", help="system prompt")
    c.add_argument("--compare", metavar="BASE", help="a second model (e.g. the base) answering each message beside "
                                                    "the first, with its own conversation")
    c.add_argument("--max-new-tokens", type=int, default=256, help="tokens per answer (default 256)")
    c.add_argument("--temperature", type=float, default=0.7, help="0 for greedy (default 0.7)")
    c.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (default 0.95)")
    c.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="weights dtype (default float32)")
    c.set_defaults(func=_cmd_chat)
