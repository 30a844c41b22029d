"""The commands that train: one per stage of the stage table, `run` (a pipeline), `init`, `demo`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ..core.config import load_config, lookup
from ..core.errors import UserError
from ..core.rundir import is_main_process
from ..stages import STAGES, load
from .flags import command, no_extra, overrides

PIPELINE = "tunesmith.pipeline:PipelineConfig"


def print_config(cfg) -> None:
    import yaml

    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")


def _resolve(cls: type, args, extra: list[str]):
    """The stage config from recipe + flags; `--resume` reuses the run's saved config."""
    recipe, over = args.recipe, overrides(args, extra)
    if args.resume:
        over.setdefault("run", {})["resume"] = True
        run_dir = over["run"].get("dir")
        saved = Path(run_dir) / "config.yaml" if run_dir else None
        if recipe is None and saved is not None and saved.exists():
            recipe = saved
    return load_config(cls, recipe, over)


def _print_result(result: Any, as_json: bool) -> None:
    if not is_main_process():  # several processes (torchrun / accelerate launch): print once
        return
    artifact = getattr(result, "model_path", None) or getattr(result, "adapter_dir", "")
    payload = {"run_dir": str(result.run_dir), "model_path": str(artifact), "metrics": result.metrics}
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


def _print_data_check(name: str, cfg) -> bool:
    """Dry runs check every row of a stage's data inputs (as `tunesmith data check` does), with the
    stage's tokenizer and length setting when known; printed as YAML comments."""
    from ..data import DataPrepConfig, check_data

    data = getattr(cfg, "data", None)
    if not isinstance(data, DataPrepConfig) or not data.inputs:
        return True
    model_path = getattr(getattr(cfg, "model", None), "path", None)
    tokenizer = model_path if model_path and Path(model_path, "tokenizer_config.json").is_file() else None
    length_key = STAGES[name].data_length_key
    max_length = lookup(cfg, length_key) if tokenizer and length_key else None
    result = check_data(data, tokenizer=tokenizer, max_length=max_length)
    print("# data check:")
    print("\n".join(f"#   {line}" for line in result.render().splitlines()))
    return result.ok


def print_plan(found, memory: str | None = None, comment: bool = False) -> None:
    """Print a StagePlan; with `comment` every line is a YAML comment, so a dry run's whole output
    stays a valid recipe that can be saved and rerun."""
    from ..adapters.planner import parse_size

    main = found.main
    mark = "# " if comment else ""
    print(f"# predicted peak memory of {found.stage} ({', '.join(f'{k}={v}' for k, v in main.settings.items())}):")
    print("\n".join(f"{mark}{line}" for line in main.table().splitlines()))
    for note in found.notes:
        print(f"# note: {note}")
    if memory:
        print(f"# settings within {memory}:")
        for p in found.options:
            fits = "fits" if p.fits(parse_size(memory)) else "too big"
            desc = ", ".join(f"{k}={v}" for k, v in p.settings.items())
            print(f"{mark}  {p.total / 2 ** 30:7.2f} GiB  {fits:7s}  {desc}")


def _cmd_stage(name: str) -> Callable:
    def run(args, extra: list[str]) -> int:
        from ..adapters.recipe_plan import plan_stage

        stage = STAGES[name]
        cfg = _resolve(stage.config_class(), args, extra)
        if args.dry_run:
            print_config(cfg)
            data_ok = _print_data_check(name, cfg)
            if name != "pretrain" and not lookup(cfg, stage.model_key):
                print(f"# no memory plan: no model given ({stage.model_key})")
            else:
                print_plan(plan_stage(name, cfg), comment=True)
            return 0 if data_ok else UserError.exit_code
        _print_result(stage.run(cfg), args.json)
        return 0
    return run


def add_stage(sub, name: str) -> None:
    stage = STAGES[name]
    p = command(sub, name, stage.help, configs=lambda recipe, args: [stage.config_class()], recipe_after=0,
                usage=f"tunesmith {name} [RECIPE.yaml] [--section.key VALUE ...] [--resume] [--dry-run] "
                      "[--json] [--quiet]")
    p.add_argument("--resume", action="store_true", help="continue the run in --run.dir from its last checkpoint")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config, the data check and the "
                                                          "memory plan, and exit")
    p.set_defaults(func=_cmd_stage(name))


def _cmd_run(args, extra: list[str]) -> int:
    from ..pipeline import PipelineConfig, run_pipeline

    if args.recipe is None:
        raise UserError("tunesmith run needs a pipeline recipe", fix="tunesmith init run -o pipeline.yaml")
    cfg = load_config(PipelineConfig, args.recipe, overrides(args, extra))
    if args.dry_run:
        print_config(cfg)
        return 0
    result = run_pipeline(cfg)
    if not is_main_process():
        return 0
    if args.json:
        print(json.dumps({"run_dir": str(result.run_dir), "model_path": str(result.model_path),
                          "stages": result.stages, "metrics": result.metrics}, default=str))
        return 0
    for s in result.stages:
        print(f"{s['name']:>10} ({s['stage']}): {'skipped (done)' if s['skipped'] else 'ran'} -> {s['output']}")
    for k, v in result.metrics.items():
        print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")
    print(f"final model: {result.model_path}")
    return 0


def _cmd_init(args, extra: list[str]) -> int:
    from ..core.rundir import atomic_write_text
    from ..recipes import starter_recipe

    no_extra(extra, "tunesmith init STAGE [-o FILE]")
    text = starter_recipe(args.stage)
    if args.output:
        if Path(args.output).exists() and not args.force:
            raise UserError("file exists", file=args.output, fix="choose another name or pass --force")
        atomic_write_text(args.output, text)
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    return 0


def _cmd_demo(args, extra: list[str]) -> int:
    from ..demo import run_demo

    run_demo(overrides(args, extra), quiet=args.quiet)
    return 0


def add_pipeline_commands(sub) -> None:
    from ..recipes import STARTERS

    i = command(sub, "init", "write a commented starter recipe for a stage",
                description="write a commented starter recipe (every key, its default and meaning)")
    i.add_argument("stage", metavar="STAGE", help=f"one of {', '.join(STARTERS)}")
    i.add_argument("-o", "--output", help="write to this file (default: print)")
    i.add_argument("--force", action="store_true", help="overwrite an existing file")
    i.set_defaults(func=_cmd_init)
    r = command(sub, "run", "run a pipeline recipe (several stages, resumable)", recipe_after=0,
                configs=lambda recipe, args: [load(PIPELINE)],
                description="run the stages of a pipeline recipe in order, each stage's model feeding the "
                            "next; re-running resumes where it stopped",
                usage="tunesmith run PIPELINE.yaml [--run.dir DIR] [--dry-run]")
    r.add_argument("--dry-run", action="store_true", help="print the resolved pipeline and exit")
    r.set_defaults(func=_cmd_run)
    d = command(sub, "demo", "the end-to-end demo on the corpus shipped with tunesmith",
                configs=lambda recipe, args: [load(PIPELINE)], usage="tunesmith demo [--run.dir DIR]")
    d.set_defaults(func=_cmd_demo)
