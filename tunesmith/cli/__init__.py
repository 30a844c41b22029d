"""The `tunesmith` command: parse arguments, call the Python API, print. Nothing else.

One command per stage of the stage table (`tunesmith.stages`), plus eval, plan, push and the
tools; every config key is a flag (see flags.py). Bad input (a UserError) prints one line and
exits 2; `--debug` shows the traceback.
"""
from __future__ import annotations

import json
import os
import shlex
import sys

from .. import __version__
from ..core.errors import TrainingStopped, UserError
from ..stages import STAGES
from .flags import BOOL_WORDS, Parser
from .launch import launch_command as _launch_command
from .serve import add_serve
from .service import add_service
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
    add_serve(sub)
    add_service(sub)
    add_pipeline_commands(sub)
    return parser


LAUNCH_ARGV = "TUNESMITH_LAUNCH_ARGV"  # the command as typed, for processes started by --launcher
# a folder where launched processes leave their one-line input error (rank<N>.txt) for the launching
# command to print once, with exit code 2, after torchrun/accelerate has reported the failed processes
LAUNCH_ERRORS = "TUNESMITH_LAUNCH_ERRORS"


def resume_command(argv: list[str], command: str | None) -> str | None:
    """After Ctrl-C: the command that continues the interrupted run (the same arguments, its run
    folder and `--run.resume true`), or None when no run had started (nothing to resume: the
    command can simply be run again) or the command does not resume (eval, the tools)."""
    from ..core.rundir import RunDir

    run = RunDir.current
    if run is None or command is None:
        return None
    args, resume = _without(argv, "--run.dir", lambda v: True), []
    if command == "run":  # a pipeline: running it again resumes; its folder holds one per stage
        root = run.path.parent
        if not (root / "pipeline.json").exists():
            return None
    elif command in STAGES and STAGES[command].kind == "train":
        root = run.path
        if "--resume" not in args:  # kept when given: without a recipe it reads the run's config.yaml
            args, resume = _without(args, "--run.resume", lambda v: v.lower() in BOOL_WORDS), ["--run.resume", "true"]
    else:
        return None
    return shlex.join(["tunesmith", *args, "--run.dir", str(root), *resume])


def _without(argv: list[str], flag: str, is_value) -> list[str]:
    """`argv` without `flag` (`flag=VALUE`, `flag VALUE` when `is_value(VALUE)`, or bare)."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == flag:
            i += 2 if i + 1 < len(argv) and is_value(argv[i + 1]) else 1
            continue
        if not argv[i].startswith(flag + "="):
            out.append(argv[i])
        i += 1
    return out


def _run_launcher(command: list[str], argv: list[str]) -> int:
    """Run the launcher; on Ctrl-C (which every launched process gets too) wait for it to stop:
    its main process prints how to resume. When the processes stopped on bad input, the one-line
    error is printed once (not once per process) and the exit code is 2, as without a launcher
    (torchrun/accelerate themselves exit 1 with their report of the failed processes)."""
    import shutil
    import subprocess
    import tempfile

    errors = tempfile.mkdtemp(prefix="tunesmith-launch-")
    try:
        proc = subprocess.Popen(command, env={**os.environ, LAUNCH_ARGV: json.dumps(argv), LAUNCH_ERRORS: errors})
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            try:
                proc.wait()
            except KeyboardInterrupt:  # a second Ctrl-C: stop now
                proc.kill()
                proc.wait()
            return 130
        found = sorted((n for n in os.listdir(errors) if n.startswith("rank")), key=lambda n: int(n[4:-4]) if n[4:-4].isdigit() else 1 << 30)
        if rc != 0 and found:
            with open(os.path.join(errors, found[0]), encoding="utf-8") as f:
                print(f"error: {f.read()}", file=sys.stderr)
            return UserError.exit_code
        return rc
    finally:
        shutil.rmtree(errors, ignore_errors=True)


def _report_user_error(e: UserError) -> None:
    """The one-line error: printed, or under --launcher left for the launching command to print once."""
    folder = os.environ.get(LAUNCH_ERRORS)
    if folder and os.path.isdir(folder):
        rank = os.environ.get("RANK", "0")
        tmp = os.path.join(folder, f".rank{rank}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(str(e))
        os.replace(tmp, os.path.join(folder, f"rank{rank}.txt"))
        return
    print(f"error: {e}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        command = _launch_command(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return UserError.exit_code
    if command is not None:
        return _run_launcher(command, argv)
    if "--quiet" in argv or "--json" in argv:
        os.environ["TQDM_DISABLE"] = "1"  # before tqdm is imported: it reads this at import
    from ..core.rundir import RunDir, is_main_process

    RunDir.current, name = None, None
    try:
        args, extra = build_parser().parse_known_args(argv)
        name = args.command
        return args.func(args, extra)
    except SystemExit as e:  # --help, --version
        return int(e.code or 0)
    except UserError as e:
        if debug:
            raise
        _report_user_error(e)
        return UserError.exit_code
    except TrainingStopped as e:
        if debug:
            raise
        print(f"stopped: {e}", file=sys.stderr)
        return TrainingStopped.exit_code
    except KeyboardInterrupt:
        if not is_main_process():
            return 130  # the main process says it
        typed = json.loads(os.environ[LAUNCH_ARGV]) if LAUNCH_ARGV in os.environ else argv
        again = resume_command(typed, name)
        print(f"interrupted; resume with: {again}" if again else "interrupted", file=sys.stderr)
        return 130
