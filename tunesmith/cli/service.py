"""`tunesmith service` (the fine-tuning service: an OpenAI-compatible files + fine-tuning jobs API)
and `tunesmith service keys create|list` (its API keys)."""
from __future__ import annotations

import json
import sys

from ..core.errors import UserError
from .flags import Parser, command, named_values, no_extra

SERVICE_USAGE = ("tunesmith service --store DIR [--model NAME=PATH_OR_HUB_ID ...] [--host H] [--port P] "
                 "[--workers N] [--db URL] [--executor local|ray] [--ray-address ADDR] [--max-file-mb MB] "
                 "[--storage-mb MB] [--max-running-per-key N] [--grace S] [--num-cpus N] [--num-gpus N] "
                 "[--allow-hub-models]")
KEYS_USAGE = "tunesmith service keys create --store DIR [--name N] [--storage-mb MB] [--max-running N] | list --store DIR"


def _models(specs: list[str] | None) -> dict[str, str]:
    return named_values(specs, "--model", "NAME=PATH_OR_HUB_ID", "write --model tiny=runs/base/model", reserved="ft:")


def _mb(value: float | None) -> int | None:
    return None if value is None else int(value * 2 ** 20)


def _cmd_service(args, extra: list[str]) -> int:
    no_extra(extra, SERVICE_USAGE)
    if args.keys_command is not None:
        return args.keys_func(args)
    if not args.store:
        raise UserError("give the store folder", field="--store", fix=SERVICE_USAGE)
    try:
        import fastapi  # noqa: F401
        import sqlalchemy  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise UserError(f"tunesmith service needs FastAPI, uvicorn and SQLAlchemy ({e.name} is missing)",
                        fix="pip install 'tunesmith[service]'") from None
    from ..service import ServiceSettings, run_service

    settings = ServiceSettings(store=args.store, models=_models(args.model), db=args.db, workers=args.workers,
                               executor=args.executor, ray_address=args.ray_address,
                               max_file_bytes=_mb(args.max_file_mb), storage_bytes=_mb(args.storage_mb),
                               max_running_per_key=args.max_running_per_key, grace=args.grace,
                               num_cpus=args.num_cpus, num_gpus=args.num_gpus, allow_hub_models=args.allow_hub_models)
    print(f"tunesmith service on http://{args.host}:{args.port}/v1 (store {args.store}, {args.workers} worker(s), "
          f"{args.executor} executor)", file=sys.stderr)
    run_service(settings, host=args.host, port=args.port, log_level="warning" if args.quiet else "info")
    return 0


def _cmd_keys_create(args) -> int:
    from ..service.store import Store

    store = Store(args.store, args.db)
    kid, key = store.create_key(args.name, storage_bytes=_mb(args.storage_mb), max_running=args.max_running)
    store.close()
    if args.json:
        print(json.dumps({"id": kid, "name": args.name, "key": key}))
    else:
        print(f"created key {kid} ({args.name}); it is shown only this once:", file=sys.stderr)
        print(key)
    return 0


def _cmd_keys_list(args) -> int:
    from ..service.store import Store

    store = Store(args.store, args.db)
    keys = store.keys()
    store.close()
    rows = [{"id": k.id, "name": k.name, "created_at": k.created_at, "storage_bytes": k.storage_bytes,
             "max_running": k.max_running, "revoked": k.revoked} for k in keys]
    print(json.dumps(rows) if args.json else "\n".join(f"{r['id']}  {r['name']}" for r in rows))
    return 0


def add_service(sub) -> None:
    s = command(sub, "service", "run the fine-tuning service (OpenAI-compatible files and fine-tuning jobs API)",
                usage=SERVICE_USAGE,
                description="an HTTP service implementing OpenAI's fine-tuning API (files, jobs, events, "
                            "checkpoints, cancel) over tunesmith's stages, with chat for the fine-tuned models; jobs "
                            "run as separate processes (or Ray tasks), state in a database with Alembic migrations. "
                            "`tunesmith service keys create --store DIR` makes an API key.")
    s.add_argument("--store", help="the store folder: database (SQLite by default), uploaded files, job runs")
    s.add_argument("--db", help="SQLAlchemy URL of the job database (default: sqlite in the store; e.g. "
                                "postgresql+psycopg://user:pass@host/db)")
    s.add_argument("--model", action="append", metavar="NAME=PATH_OR_HUB_ID",
                   help="a base model jobs may name (repeatable): a model folder, run directory or Hub id")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--workers", type=int, default=1, help="jobs running at a time (default 1)")
    s.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local (a process per job, default) or ray (a Ray task per job)")
    s.add_argument("--ray-address", help="Ray cluster address (default: start a local Ray; 'auto': a running one)")
    s.add_argument("--max-file-mb", type=float, default=512, help="largest upload in MiB (default 512)")
    s.add_argument("--storage-mb", type=float, help="stored files per key in MiB (default: no limit; a key's own "
                                                    "quota wins)")
    s.add_argument("--max-running-per-key", type=int, help="running jobs per key (default: no limit but --workers; "
                                                           "a key's own limit wins)")
    s.add_argument("--grace", type=float, default=10.0, help="seconds from SIGTERM to SIGKILL on cancel (default 10)")
    s.add_argument("--num-cpus", type=float, default=1, help="CPUs each job requests (Ray; default 1)")
    s.add_argument("--num-gpus", type=float, default=0, help="GPUs each job requests (Ray; default 0)")
    s.add_argument("--allow-hub-models", action="store_true", help="jobs may name any Hub model id (owner/name)")
    s.set_defaults(func=_cmd_service, keys_command=None)
    keys = s.add_subparsers(dest="keys_group", metavar="keys", parser_class=Parser)
    group = keys.add_parser("keys", help="API keys of the service", description=KEYS_USAGE)
    ksub = group.add_subparsers(dest="keys_command", metavar="create|list", parser_class=Parser)
    ksub.required = True
    c = command(ksub, "create", "create an API key (printed once; stored hashed)", usage=KEYS_USAGE)
    c.add_argument("--store", required=True, help="the store folder")
    c.add_argument("--db", help="SQLAlchemy URL of the job database (default: sqlite in the store)")
    c.add_argument("--name", default="default", help="a name for the key (default 'default')")
    c.add_argument("--storage-mb", type=float, help="this key's storage quota in MiB")
    c.add_argument("--max-running", type=int, help="this key's limit of running jobs")
    c.set_defaults(keys_func=_cmd_keys_create)
    ls = command(ksub, "list", "list the API keys (ids and names; keys are never shown again)", usage=KEYS_USAGE)
    ls.add_argument("--store", required=True, help="the store folder")
    ls.add_argument("--db", help="SQLAlchemy URL of the job database")
    ls.set_defaults(keys_func=_cmd_keys_list)
