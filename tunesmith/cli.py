"""The `tunesmith` command: parse arguments, call the Python API, print. Nothing else.

Bad input (a UserError) prints one line and exits 2; `--debug` shows the traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .core.config import describe_fields, load_config
from .core.errors import TrainingStopped, UserError
from .core.rundir import is_main_process


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage + message)
        raise UserError(f"{self.prog}: {message} (see --help)")


def _stage_help(config_cls) -> str:
    rows = describe_fields(config_cls)
    width = max(len(r[0]) for r in rows)
    lines = [f"  {flag:<{width}}  {help_} [default: {default}]" for flag, default, help_ in rows]
    return "config keys (YAML `section: {key: value}` or flags `--section.key VALUE`):\n" + "\n".join(lines)


def _common() -> argparse.ArgumentParser:
    """Flags every command takes, before or after the command name."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the result as JSON")
    return p


def _add_stage(sub, name: str, config_cls, help_: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=help_, epilog=_stage_help(config_cls),
                       formatter_class=argparse.RawDescriptionHelpFormatter, parents=[_common()])
    p.usage = f"tunesmith {name} [RECIPE.yaml] [--section.key VALUE ...] [--resume] [--dry-run] [--json] [--quiet]"
    p.add_argument("--resume", action="store_true", help="continue the run in --run.dir from its last checkpoint")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.set_defaults(config_cls=config_cls)
    return p


def _resolve(args, overrides: list[str]):
    """The stage config from recipe + flags; `--resume` reuses the run's saved config."""
    recipe = None
    if overrides and not overrides[0].startswith("-"):
        recipe, overrides = overrides[0], overrides[1:]
    if args.resume:
        overrides = overrides + ["--run.resume", "true"]
        run_dir = next((overrides[i + 1] for i, a in enumerate(overrides[:-1]) if a == "--run.dir"), None)
        saved = Path(run_dir) / "config.yaml" if run_dir else None
        if recipe is None and saved is not None and saved.exists():
            recipe = saved
    return load_config(args.config_cls, recipe, overrides)


def _print_result(result: Any, as_json: bool) -> None:
    if not is_main_process():  # several processes (torchrun / accelerate launch): print once
        return
    payload = {"run_dir": str(result.run_dir), "model_path": str(getattr(result, "model_path", "")),
               "metrics": result.metrics}
    if as_json:
        print(json.dumps(payload, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"run: {result.run_dir}", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result.metrics.items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    console = Console()
    console.print(table)
    console.print(f"model: {payload['model_path']}")
    if getattr(result, "sample", ""):
        console.print(f"sample: {result.sample!r}")


def _cmd_stage(api: Callable) -> Callable:
    def run(args, overrides: list[str]) -> int:
        cfg = _resolve(args, overrides)
        if args.dry_run:
            import yaml
            print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
            return 0
        _print_result(api(cfg), args.json)
        return 0
    return run


def _api(name: str) -> Callable:
    import tunesmith

    return getattr(tunesmith, name)


def _cmd_data_check(args, overrides: list[str]) -> int:
    from .data import check_data

    if overrides:
        raise UserError(f'unexpected argument "{overrides[0]}"', fix="see tunesmith data check --help")
    labels = [l.strip() for l in args.labels.split(",")] if args.labels else None
    result = check_data(list(args.paths), format=args.format, tokenizer=args.tokenizer,
                        max_length=args.max_length, labels=labels)
    print(json.dumps(result.summary(), default=str) if args.json else result.render())
    return 0 if result.ok else UserError.exit_code


def _cmd_data_prepare(args, overrides: list[str]) -> int:
    from .data import DataPrepConfig, prepare

    recipe = None
    if overrides and not overrides[0].startswith("-"):
        recipe, overrides = overrides[0], overrides[1:]
    cfg = load_config(DataPrepConfig, recipe, overrides)
    if args.dry_run:
        import yaml
        print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
        return 0
    result = prepare(cfg)
    print(json.dumps(result.card, default=str) if args.json else result.render())
    return 0


def _cmd_demo(args, overrides: list[str]) -> int:
    from .demo import run_demo

    run_demo(overrides, quiet=args.quiet)
    return 0


def _add_data(sub) -> None:
    from .data import DataPrepConfig

    data = sub.add_parser("data", help="check or prepare datasets", description="check or prepare datasets")
    dsub = data.add_subparsers(dest="data_command", metavar="check|prepare", parser_class=_Parser)
    dsub.required = True
    c = dsub.add_parser("check", parents=[_common()], help="check every row; exit 2 if any problem",
                        description="print the detected format, row counts, token-length percentiles "
                                    "and every problem (file:line: field ...); exit code 2 if any")
    c.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or save_to_disk folders")
    c.add_argument("--format", help="force a format instead of detecting it")
    c.add_argument("--tokenizer", help="tokenizer/model folder for token lengths")
    c.add_argument("--max-length", type=int, help="report rows longer than this many tokens")
    c.add_argument("--labels", help="comma-separated label set for classification rows")
    c.set_defaults(func=_cmd_data_check)
    p = dsub.add_parser("prepare", parents=[_common()], help="clean, deduplicate, anonymize, mix and split",
                        description="clean, deduplicate, anonymize, mix and split datasets",
                        epilog=_stage_help(DataPrepConfig), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.usage = "tunesmith data prepare [RECIPE.yaml] [--section.key VALUE ...] [--dry-run]"
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=_cmd_data_prepare)


def build_parser() -> argparse.ArgumentParser:
    from .pretraining import PretrainConfig

    parser = _Parser(prog="tunesmith", description="Build, fine-tune, align and evaluate language models.")
    parser.add_argument("--version", action="version", version=f"tunesmith {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--launcher", choices=["torchrun", "accelerate"],
                        help="run the command on several processes (DDP; see --num-processes)")
    parser.add_argument("--num-processes", type=int, default=2, help="processes for --launcher")
    parser.add_argument("--accelerate-config", help="a shipped accelerate config name (ddp_cpu, ddp_gpu, "
                        "fsdp_full_shard, deepspeed_zero2, deepspeed_zero3, multinode_ddp) or a file")
    parser.set_defaults(debug=False, quiet=False, json=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    p = _add_stage(sub, "pretrain", PretrainConfig,
                   "train a causal LM from scratch (or continue one) on a text corpus")
    p.set_defaults(func=_cmd_stage(lambda cfg: _api("pretrain")(cfg)))
    _add_data(sub)
    d = sub.add_parser("demo", help="the end-to-end demo on the corpus shipped with tunesmith",
                       description="the end-to-end demo on the corpus shipped with tunesmith",
                       parents=[_common()])
    d.set_defaults(func=_cmd_demo)
    return parser


LAUNCH_FLAGS = ("--launcher", "--num-processes", "--accelerate-config")


def _launch_command(argv: list[str]) -> list[str] | None:
    """`tunesmith --launcher accelerate --num-processes 2 pretrain ...` -> the command that runs
    the same tunesmith command under the launcher (None without --launcher)."""
    opts, rest, i = {}, [], 0
    while i < len(argv):
        flag, eq, value = argv[i].partition("=")
        if flag in LAUNCH_FLAGS:
            if not eq:
                if i + 1 >= len(argv):
                    raise UserError(f"{flag} needs a value")
                value, i = argv[i + 1], i + 1
            opts[flag] = value
        else:
            rest.append(argv[i])
        i += 1
    if "--launcher" not in opts:
        return None
    n = opts.get("--num-processes", "2")
    if opts["--launcher"] == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                "-m", "tunesmith.cli", *rest]
    if opts["--launcher"] == "accelerate":
        from .distributed import config_path

        config = ["--config_file", str(config_path(opts["--accelerate-config"]))] \
            if "--accelerate-config" in opts else ["--multi_gpu"] if _has_cuda() else ["--cpu"]
        return [sys.executable, "-m", "accelerate.commands.launch", *config, "--num_processes", n,
                "-m", "tunesmith.cli", *rest]
    raise UserError(f'unknown launcher "{opts["--launcher"]}"', fix="use torchrun or accelerate")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        command = _launch_command(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return UserError.exit_code
    if command is not None:
        import subprocess

        return subprocess.call(command)
    if "--quiet" in argv or "--json" in argv:
        os.environ["TQDM_DISABLE"] = "1"  # before tqdm is imported: it reads this at import
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        return args.func(args, extra)
    except UserError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return UserError.exit_code
    except TrainingStopped as e:
        if debug:
            raise
        print(f"stopped: {e}", file=sys.stderr)
        return TrainingStopped.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
