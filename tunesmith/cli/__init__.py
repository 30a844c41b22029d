"""The `tunesmith` command: parse arguments, call the Python API, print. Nothing else.

One command per stage of the stage table (`tunesmith.stages`), plus eval, plan, push and the
tools; every config key is a flag (see flags.py). Bad input (a UserError) prints one line and
exits 2; `--debug` shows the traceback.
"""
from __future__ import annotations

import os
import sys

from .. import __version__
from ..core.errors import TrainingStopped, UserError
from ..stages import STAGES
from .flags import Parser
from .launch import launch_command as _launch_command
from .tools import add_data, add_eval, add_tools
from .train import add_pipeline_commands, add_stage


def build_parser() -> Parser:
    parser = Parser(prog="tunesmith", description="Build, fine-tune, align and evaluate language models.")
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name, stage in STAGES.items():
        if stage.kind == "train":
            add_stage(sub, name)
    add_eval(sub)
    add_tools(sub)
    add_data(sub)
    add_pipeline_commands(sub)
    return parser


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
        args, extra = build_parser().parse_known_args(argv)
        return args.func(args, extra)
    except SystemExit as e:  # --help, --version
        return int(e.code or 0)
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
