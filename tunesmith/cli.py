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
    lazy_epilog: Callable[[], str] | None = None  # built on --help only: stage modules load slowly

    def error(self, message: str):  # one line, exit 2 (argparse prints usage + message)
        raise UserError(f"{self.prog}: {message} (see --help)")

    def format_help(self) -> str:
        if self.lazy_epilog is not None:
            self.epilog = self.lazy_epilog()
        return super().format_help()


def _load(ref: str):
    """"package.module:name" -> the object (imported on first use)."""
    import importlib

    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


# command -> (config class, API function, help). One row per training stage.
STAGES = {
    "pretrain": ("tunesmith.pretraining.config:PretrainConfig", "tunesmith.pretraining.stage:pretrain",
                 "train a causal LM from scratch (or continue one) on a text corpus"),
    "sft": ("tunesmith.alignment.sft:SFTConfig", "tunesmith.alignment.sft:sft",
            "instruction-tune on any instruction/chat format (loss on assistant turns, packing)"),
    "dpo": ("tunesmith.alignment.preference:DPOConfig", "tunesmith.alignment.preference:dpo",
            "direct preference optimization (sigmoid, IPO, hinge, robust, ... loss types)"),
    "kto": ("tunesmith.alignment.preference:KTOConfig", "tunesmith.alignment.preference:kto",
            "KTO on unpaired desirable/undesirable completions"),
    "orpo": ("tunesmith.alignment.preference:ORPOConfig", "tunesmith.alignment.preference:orpo",
             "ORPO: reference-free preference alignment"),
    "simpo": ("tunesmith.alignment.preference:SimPOConfig", "tunesmith.alignment.preference:simpo",
              "SimPO (through TRL's CPO): reference-free preference alignment"),
    "finetune": ("tunesmith.adapters.finetune:FinetuneConfig", "tunesmith.adapters.finetune:finetune",
                 "task fine-tuning: a classification/regression head with LoRA (or full) on any model"),
    "reward": ("tunesmith.alignment.reward:RewardConfig", "tunesmith.alignment.reward:reward",
               "train a reward model on preference pairs"),
    "rlhf": ("tunesmith.alignment.rl:RLHFConfig", "tunesmith.alignment.rl:rlhf",
             "online RL (GRPO or RLOO) from reward functions or reward models"),
    "distill": ("tunesmith.alignment.distill:DistillConfig", "tunesmith.alignment.distill:distill",
                "distill a teacher's logits into a student (forward/reverse KL, JSD, on-policy)"),
}


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


def _add_stage(sub, name: str) -> argparse.ArgumentParser:
    config_ref, api_ref, help_ = STAGES[name]
    p = sub.add_parser(name, help=help_, description=help_,
                       formatter_class=argparse.RawDescriptionHelpFormatter, parents=[_common()])
    p.lazy_epilog = lambda: _stage_help(_load(config_ref))
    p.usage = f"tunesmith {name} [RECIPE.yaml] [--section.key VALUE ...] [--resume] [--dry-run] [--json] [--quiet]"
    p.add_argument("--resume", action="store_true", help="continue the run in --run.dir from its last checkpoint")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.set_defaults(config_ref=config_ref, func=_cmd_stage(api_ref))
    return p


def _split_recipe(overrides: list[str]) -> tuple[str | None, list[str]]:
    """(RECIPE.yaml or None, the --section.key flags after it)."""
    if overrides and not overrides[0].startswith("-"):
        return overrides[0], overrides[1:]
    return None, overrides


def _no_extra(overrides: list[str], usage: str) -> None:
    if overrides:
        raise UserError(f'unexpected argument "{overrides[0]}"', fix=usage)


def _print_config(cfg) -> None:
    import yaml

    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")


def _resolve(args, overrides: list[str]):
    """The stage config from recipe + flags; `--resume` reuses the run's saved config."""
    recipe, overrides = _split_recipe(overrides)
    if args.resume:
        overrides = overrides + ["--run.resume", "true"]
        run_dir = next((overrides[i + 1] for i, a in enumerate(overrides[:-1]) if a == "--run.dir"), None)
        saved = Path(run_dir) / "config.yaml" if run_dir else None
        if recipe is None and saved is not None and saved.exists():
            recipe = saved
    return load_config(_load(args.config_ref), recipe, overrides)


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


def _cmd_stage(api_ref: str) -> Callable:
    def run(args, overrides: list[str]) -> int:
        cfg = _resolve(args, overrides)
        if args.dry_run:
            _print_config(cfg)
            data_ok = _print_data_check(cfg)
            _print_plan(cfg.model_dump(mode="json"), comment=True)
            return 0 if data_ok else UserError.exit_code
        _print_result(_load(api_ref)(cfg), args.json)
        return 0
    return run


def _cmd_data_check(args, overrides: list[str]) -> int:
    from .data import check_data

    _no_extra(overrides, "see tunesmith data check --help")
    labels = [l.strip() for l in args.labels.split(",")] if args.labels else None
    result = check_data(list(args.paths), format=args.format, tokenizer=args.tokenizer,
                        max_length=args.max_length, labels=labels)
    print(json.dumps(result.summary(), default=str) if args.json else result.render())
    return 0 if result.ok else UserError.exit_code


def _cmd_data_prepare(args, overrides: list[str]) -> int:
    from .data import DataPrepConfig, prepare

    recipe, overrides = _split_recipe(overrides)
    cfg = load_config(DataPrepConfig, recipe, overrides)
    if args.dry_run:
        _print_config(cfg)
        return 0
    result = prepare(cfg)
    print(json.dumps(result.card, default=str) if args.json else result.render())
    return 0


def _cmd_run(args, overrides: list[str]) -> int:
    from .pipeline import PipelineConfig, run_pipeline

    recipe, overrides = _split_recipe(overrides)
    if recipe is None:
        raise UserError("tunesmith run needs a pipeline recipe", fix="tunesmith init run > pipeline.yaml")
    cfg = load_config(PipelineConfig, recipe, overrides)
    if args.dry_run:
        _print_config(cfg)
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


def _cmd_init(args, overrides: list[str]) -> int:
    from .core.rundir import atomic_write_text
    from .recipes import starter_recipe

    _no_extra(overrides, "tunesmith init STAGE [-o FILE]")
    text = starter_recipe(args.stage)
    if args.output:
        if Path(args.output).exists() and not args.force:
            raise UserError("file exists", file=args.output, fix="choose another name or pass --force")
        atomic_write_text(args.output, text)
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    return 0


def _cmd_demo(args, overrides: list[str]) -> int:
    from .demo import run_demo

    run_demo(overrides, quiet=args.quiet)
    return 0


def _add_data(sub) -> None:
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
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.lazy_epilog = lambda: _stage_help(_load("tunesmith.data:DataPrepConfig"))
    p.usage = "tunesmith data prepare [RECIPE.yaml] [--section.key VALUE ...] [--dry-run]"
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=_cmd_data_prepare)


EVAL_FLAGS = {  # convenience flag -> config key
    "model": "--model.path", "tasks": "--data.tasks", "data": "--data.dir", "k": "--fewshot.k",
    "limit": "--data.eval_limit", "seeds": "--finetune.seeds", "run_dir": "--run.dir",
}


def _cmd_eval(args, overrides: list[str]) -> int:
    if args.target == "perplexity":
        return _cmd_perplexity(args, overrides)
    from .eval import EvalConfig, markdown_table, run

    recipe, overrides = _split_recipe(overrides)
    flags = ["--data.benchmark", args.target]
    for name, key in EVAL_FLAGS.items():
        value = getattr(args, name)
        if value is not None:
            flags += [key, f"[{value}]" if name == "seeds" else str(value)]
    if args.hub:
        flags += ["--data.source", "hub"]
    if args.train or args.fewshot_train:
        flags += ["--protocol", "finetune" if args.train else "fewshot_finetune"]
    if args.calibrated:
        flags += ["--fewshot.scoring", "calibrated"]
    cfg = load_config(EvalConfig, recipe, flags + overrides)
    result = run(cfg)
    if args.json:
        print(json.dumps(result.to_dict() if hasattr(result, "to_dict") else str(result), default=str))
    else:
        print(markdown_table(result))
        if cfg.run.dir:
            print(f"results written to {cfg.run.dir}/results.json and {cfg.run.dir}/results.md")
    return 0


def _cmd_perplexity(args, overrides: list[str]) -> int:
    from .core.modelio import load_causal_lm
    from .eval import perplexity
    from .pretraining.tokenizer import load_tokenizer

    _no_extra(overrides, "see tunesmith eval --help")
    if not args.model or not args.text:
        raise UserError("eval perplexity needs --model PATH and --text FILE")
    texts = [t for t in _read_texts(args.text) if t.strip()]
    model, tok = load_causal_lm(args.model), load_tokenizer(args.model)
    result = perplexity(model, tok, texts, block_size=args.block_size, stride=args.stride)
    print(json.dumps(result) if args.json else
          f"perplexity {result['perplexity']:.3f}  nll {result['nll']:.4f}  tokens {result['tokens']}")
    return 0


def _read_texts(path: str) -> list[str]:
    from .pretraining.documents import iter_documents

    return list(iter_documents([path]))


def _add_eval(sub) -> None:
    e = sub.add_parser("eval", parents=[_common()], formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="GLUE / SuperGLUE (few-shot or fine-tune) and perplexity",
                       description="score a model on GLUE or SuperGLUE with the official metrics, or its "
                                   "perplexity on a text file")
    e.lazy_epilog = lambda: _stage_help(_load("tunesmith.eval:EvalConfig"))
    e.usage = ("tunesmith eval {glue,superglue} --model PATH [--tasks a,b|all] [--data DIR] [--train | "
               "--fewshot-train] [--k K] [--calibrated] [RECIPE.yaml] [--section.key VALUE ...]\n"
               "       tunesmith eval perplexity --model PATH --text FILE [--block-size N] [--stride N]")
    e.add_argument("target", choices=["glue", "superglue", "perplexity"])
    e.add_argument("--model", help="model folder")
    e.add_argument("--tasks", help="comma-separated task names, or all")
    e.add_argument("--data", help="local benchmark folder in the official layout")
    e.add_argument("--hub", action="store_true", help="load the tasks from the Hub (needs network)")
    e.add_argument("--train", action="store_true", help="fine-tune a head per task, then score")
    e.add_argument("--fewshot-train", action="store_true", help="fine-tune on 32 examples over --seeds")
    e.add_argument("--k", type=int, help="few-shot demonstrations per prompt")
    e.add_argument("--calibrated", action="store_true", help="calibrated few-shot scoring")
    e.add_argument("--limit", type=int, help="score at most N rows per task")
    e.add_argument("--seeds", help="comma-separated seeds (fine-tune protocols)")
    e.add_argument("--run-dir", help="write results.json / results.md here")
    e.add_argument("--text", help="perplexity: text/JSONL file")
    e.add_argument("--block-size", type=int, help="perplexity: tokens per window")
    e.add_argument("--stride", type=int, help="perplexity: sliding-window stride")
    e.set_defaults(func=_cmd_eval)


def _print_data_check(cfg) -> bool:
    """Dry runs check every row of a stage's data inputs (as `tunesmith data check` does), with
    the stage's tokenizer and max_length when known; printed as YAML comments."""
    from .data import DataPrepConfig, check_data

    data = getattr(cfg, "data", None)
    if not isinstance(data, DataPrepConfig) or not data.inputs:
        return True
    model_path = getattr(getattr(cfg, "model", None), "path", None)
    tokenizer = model_path if model_path and Path(model_path, "tokenizer_config.json").is_file() else None
    max_length = next((v for sec in dict(cfg).values()
                       if isinstance(v := getattr(sec, "max_length", None), int)), None) if tokenizer else None
    result = check_data(data, tokenizer=tokenizer, max_length=max_length)
    print("# data check:")
    print("\n".join(f"#   {line}" for line in result.render().splitlines()))
    return result.ok


def _print_plan(recipe: dict, memory: str | None = None, comment: bool = False, **shape) -> None:
    """Print the memory plan; with ``comment`` every line is a YAML comment, so a dry run's whole
    output stays a valid recipe that can be saved and rerun."""
    from .adapters.recipe_plan import plan_recipe

    main, options = plan_recipe(recipe, memory=memory, **shape)
    print(f"# predicted peak memory ({', '.join(f'{k}={v}' for k, v in main.settings.items())}):")
    table = main.table()
    print("\n".join(f"# {line}" for line in table.splitlines()) if comment else table)
    if memory:
        print(f"# settings within {memory}:")
        for p in options:
            mark = "fits" if p.fits(parse_size(memory)) else "too big"
            desc = ", ".join(f"{k}={v}" for k, v in p.settings.items())
            print(f"  {p.total / 2 ** 30:7.2f} GiB  {mark:7s}  {desc}")


def parse_size(text: str) -> int:
    from .adapters.planner import parse_size as parse

    return parse(text)


def _cmd_plan(args, overrides: list[str]) -> int:
    from .core.config import deep_merge, parse_overrides, read_yaml

    path, overrides = _split_recipe(overrides)
    recipe = read_yaml(path) if path else {}
    recipe = deep_merge(recipe, parse_overrides(overrides)) if overrides else recipe
    shape = {k: v for k, v in (("batch_size", args.batch_size), ("seq_len", args.seq_len)) if v}
    _print_plan(recipe, args.memory, device=args.device, **shape)
    return 0


def _cmd_merge(args, overrides: list[str]) -> int:
    from .adapters.merge import merge

    _no_extra(overrides, "tunesmith merge ADAPTER_DIR OUT")
    out = merge(args.adapter_dir, args.output, base=args.base, dtype=args.dtype)
    print(f"merged model written to {out} (loads with AutoModelForCausalLM / AutoModelForSequenceClassification)")
    return 0


def _cmd_report(args, overrides: list[str]) -> int:
    from .report import write_report

    _no_extra(overrides, "tunesmith report RUN_DIR")
    result = write_report(args.run_dir)
    print(f"wrote {result.html} and {result.markdown} ({len(result.plot_files)} plots in "
          f"{Path(args.run_dir) / 'plots'})")
    return 0


def _cmd_push(args, overrides: list[str]) -> int:
    from .hub import PushConfig, push

    flags = [f"--{k}" if not k.startswith("--") else k for k in overrides]
    for name in ("private", "merged", "create_pr"):
        if getattr(args, name):
            flags += [f"--{name}", "true"]
    cfg = load_config(PushConfig, None, flags)
    result = push(args.run_dir, cfg)
    print(f"pushed {len(result.files)} files to {result.url} (revision {result.revision})")
    if getattr(result, "pr_url", None):
        print(f"pull request: {result.pr_url}")
    return 0


def _add_tools(sub) -> None:
    pl = sub.add_parser("plan", parents=[_common()], help="predict a recipe's peak training memory",
                        description="predict peak memory (weights, gradients, optimizer, activations) of a "
                                    "recipe, and with --memory which settings would fit")
    pl.usage = "tunesmith plan [RECIPE.yaml] [--section.key VALUE ...] [--memory 16GB] [--batch-size N] [--seq-len N]"
    pl.add_argument("--memory", help="budget, e.g. 16GB: list full / LoRA / QLoRA settings that fit")
    pl.add_argument("--batch-size", type=int, help="micro-batch (default: the recipe's)")
    pl.add_argument("--seq-len", type=int, help="tokens per sequence (default: the recipe's)")
    pl.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    pl.set_defaults(func=_cmd_plan)
    m = sub.add_parser("merge", parents=[_common()], help="merge an adapter into its base (QLoRA dequantized)",
                       description="write a full model folder: the adapter merged into its base, in the "
                                   "base dtype (QLoRA bases are dequantized properly)")
    m.add_argument("adapter_dir", metavar="ADAPTER_DIR")
    m.add_argument("output", metavar="OUT")
    m.add_argument("--base", help="base model folder (default: the one recorded with the adapter)")
    m.add_argument("--dtype", default="base", choices=["base", "float32", "bfloat16", "float16"])
    m.set_defaults(func=_cmd_merge)
    r = sub.add_parser("report", parents=[_common()], help="write report.html / report.md for a run",
                       description="write report.html and report.md (curves, eval tables, memory, config)")
    r.add_argument("run_dir", metavar="RUN_DIR")
    r.set_defaults(func=_cmd_report)
    p = sub.add_parser("push", parents=[_common()], formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="upload a run's adapter/model, tokenizer, model card and report to the Hub",
                       description="upload a run's adapter (or merged model), tokenizer, model card and "
                                   "report to the Hugging Face Hub (token: HF_TOKEN or `hf auth login`)")
    p.lazy_epilog = lambda: _stage_help(_load("tunesmith.hub:PushConfig"))
    p.usage = ("tunesmith push RUN_DIR --repo user/name [--private] [--revision BRANCH] [--merged] "
               "[--create-pr] [--license ID] [--datasets '[a, b]'] [--base-model ID] [--key VALUE ...]")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--merged", action="store_true", help="upload the adapter merged into its base")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    p.set_defaults(func=_cmd_push)


def build_parser() -> argparse.ArgumentParser:
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
    for name in STAGES:
        _add_stage(sub, name)
    _add_eval(sub)
    _add_tools(sub)
    _add_data(sub)
    i = sub.add_parser("init", parents=[_common()], help="write a commented starter recipe for a stage",
                       description="write a commented starter recipe (every key, its default and meaning)")
    i.add_argument("stage", metavar="STAGE", help="a training stage, eval, data, or run (a pipeline)")
    i.add_argument("-o", "--output", help="write to this file (default: print)")
    i.add_argument("--force", action="store_true", help="overwrite an existing file")
    i.set_defaults(func=_cmd_init)
    r = sub.add_parser("run", parents=[_common()], help="run a pipeline recipe (several stages, resumable)",
                       description="run the stages of a pipeline recipe in order, each stage's model "
                                   "feeding the next; re-running resumes where it stopped")
    r.usage = "tunesmith run PIPELINE.yaml [--run.dir DIR] [--dry-run]"
    r.add_argument("--dry-run", action="store_true", help="print the resolved pipeline and exit")
    r.set_defaults(func=_cmd_run)
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
