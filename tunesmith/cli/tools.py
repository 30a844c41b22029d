"""The commands around training: eval, plan, merge, report, push, data check|prepare."""
from __future__ import annotations

import json
from pathlib import Path

from ..core.config import deep_merge, load_config, read_yaml
from ..core.errors import UserError
from ..stages import STAGES, load
from .flags import Parser, add_alias, command, no_extra, overrides
from .train import print_config, print_plan

EVAL_CONFIG = STAGES["eval"].config
PUSH_CONFIG = "tunesmith.hub:PushConfig"
PLAN_CONFIG = "tunesmith.adapters.recipe_plan:PlanConfig"
DATA_CONFIG = "tunesmith.data:DataPrepConfig"


def _cmd_eval(args, extra: list[str]) -> int:
    if args.target == "perplexity":
        return _cmd_perplexity(args, extra)
    from ..eval import EvalConfig, markdown_table

    cfg = load_config(EvalConfig, args.recipe, deep_merge({"data": {"benchmark": args.target}}, overrides(args, extra)))
    if args.dry_run:
        print_config(cfg)
        return 0
    result = STAGES["eval"].run(cfg)
    if args.json:
        print(json.dumps(result.to_dict() if hasattr(result, "to_dict") else str(result), default=str))
    else:
        print(markdown_table(result))
        if cfg.run.dir:
            print(f"results written to {cfg.run.dir}/results.json and {cfg.run.dir}/results.md")
    return 0


def _cmd_perplexity(args, extra: list[str]) -> int:
    from ..core.modelio import load_causal_lm
    from ..eval import perplexity
    from ..pretraining.documents import iter_documents
    from ..pretraining.tokenizer import load_tokenizer

    no_extra(extra, "see tunesmith eval --help")
    model_path = getattr(args, "config", {}).get("model.path")
    if not model_path or not args.text:
        raise UserError("eval perplexity needs --model PATH and --text FILE")
    texts = [t for t in iter_documents([args.text]) if t.strip()]
    from ..adapters.chain import model_folder

    model_path = model_folder(model_path)  # a run directory or an adapter folder: the model it stands for
    model, tok = load_causal_lm(model_path), load_tokenizer(model_path)
    result = perplexity(model, tok, texts, block_size=args.block_size, stride=args.stride)
    print(json.dumps(result) if args.json else
          f"perplexity {result['perplexity']:.3f}  nll {result['nll']:.4f}  tokens {result['tokens']}")
    return 0


def add_eval(sub) -> None:
    e = command(sub, "eval", STAGES["eval"].help, configs=lambda recipe, args: [load(EVAL_CONFIG)], recipe_after=1,
                description="score a model on GLUE or SuperGLUE with the official metrics, or its perplexity on "
                            "a text file",
                usage="tunesmith eval {glue,superglue} [RECIPE.yaml] --model PATH [--tasks a,b|all] [--data DIR] "
                      "[--train | --fewshot-train] [--k K] [--calibrated] [--section.key VALUE ...]\n"
                      "       tunesmith eval perplexity --model PATH --text FILE [--block-size N] [--stride N]")
    e.add_argument("target", choices=["glue", "superglue", "perplexity"])
    # documented short spellings of config keys; every key also has its own flag (see below)
    add_alias(e, "--model", "model.path", "model folder", metavar="DIR")
    add_alias(e, "--tasks", "data.tasks", "comma-separated task names, or all", metavar="a,b")
    add_alias(e, "--data", "data.dir", "local benchmark folder in the official layout", metavar="DIR")
    add_alias(e, "--k", "fewshot.k", "few-shot demonstrations per prompt", metavar="K")
    add_alias(e, "--limit", "data.eval_limit", "score at most N rows per task", metavar="N")
    add_alias(e, "--seeds", "finetune.seeds", "comma-separated seeds (fine-tune protocols)", metavar="a,b",
              is_list=True)
    add_alias(e, "--run-dir", "run.dir", "write results.json / results.md here", metavar="DIR")
    add_alias(e, "--hub", "data.source", "load the tasks from the Hub (needs network)", value="hub")
    add_alias(e, "--train", "protocol", "fine-tune a head per task, then score", value="finetune")
    add_alias(e, "--fewshot-train", "protocol", "fine-tune on 32 examples over --seeds", value="fewshot_finetune")
    add_alias(e, "--calibrated", "fewshot.scoring", "calibrated few-shot scoring", value="calibrated")
    e.add_argument("--text", help="perplexity: text/JSONL file")
    e.add_argument("--block-size", type=int, help="perplexity: tokens per window")
    e.add_argument("--stride", type=int, help="perplexity: sliding-window stride")
    e.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    e.set_defaults(func=_cmd_eval)


def _flag_value(args: list[str], flag: str) -> str | None:
    """The value given to `flag` (`--stage sft` or `--stage=sft`), read before the flags exist."""
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _plan_configs(recipe: str | None, args: list[str]) -> list[type]:
    """`tunesmith plan` takes its own keys and those of the stage the recipe is for (a pipeline: its own)."""
    from ..adapters.recipe_plan import stage_of

    data = read_yaml(recipe) if recipe else {}
    if "stages" in data:
        return [load(PLAN_CONFIG)]
    stage = stage_of(data, _flag_value(args, "--stage"), str(recipe or "command-line flags"))
    return [load(PLAN_CONFIG), STAGES[stage].config_class()]


def _cmd_plan(args, extra: list[str]) -> int:
    from ..adapters.recipe_plan import PlanConfig, plan_pipeline, plan_recipe

    given = overrides(args, extra)
    options = load_config(PlanConfig, None, {k: given.pop(k) for k in list(given) if k in PlanConfig.model_fields})
    recipe = read_yaml(args.recipe) if args.recipe else {}
    source = str(args.recipe or "command-line flags")
    if "stages" not in recipe:
        print_plan(plan_recipe(deep_merge(recipe, given), options, source), options.memory)
        return 0
    if given or options.stage:
        raise UserError("a pipeline is planned as written", file=source,
                        fix="change its stages in the file, or plan one stage's recipe with its flags")
    for found in plan_pipeline(recipe, options, source):
        print_plan(found, options.memory)
    return 0


def _cmd_merge(args, extra: list[str]) -> int:
    from ..adapters.merge import merge

    no_extra(extra, "tunesmith merge ADAPTER_DIR OUT")
    out = merge(args.adapter_dir, args.output, base=args.base, dtype=args.dtype)
    print(f"merged model written to {out} (loads with AutoModelForCausalLM / AutoModelForSequenceClassification)")
    return 0


def _cmd_report(args, extra: list[str]) -> int:
    from ..report import write_report

    no_extra(extra, "tunesmith report RUN_DIR")
    result = write_report(args.run_dir)
    print(f"wrote {result.html} and {result.markdown} ({len(result.plot_files)} plots in "
          f"{Path(args.run_dir) / 'plots'})")
    return 0


def _cmd_push(args, extra: list[str]) -> int:
    from ..hub import PushConfig, push

    result = push(args.run_dir, load_config(PushConfig, None, overrides(args, extra)))
    print(f"pushed {len(result.files)} files to {result.url} (revision {result.revision})")
    if getattr(result, "pr_url", None):
        print(f"pull request: {result.pr_url}")
    return 0


def add_tools(sub) -> None:
    pl = command(sub, "plan", "predict a recipe's peak training memory", configs=_plan_configs, recipe_after=0,
                 description="predict the peak memory (weights, gradients, optimizer, activations) of a stage "
                             "recipe as its stage would train it, and with --memory which settings would fit",
                 usage="tunesmith plan [RECIPE.yaml] [--stage STAGE] [--section.key VALUE ...] [--memory 16GB] "
                       "[--batch-size N] [--seq-len N] [--device cpu|cuda]")
    pl.set_defaults(func=_cmd_plan)
    m = command(sub, "merge", "merge an adapter into its base (QLoRA dequantized)",
                description="write a full model folder: the adapter merged into its base, in the base dtype "
                            "(QLoRA bases are dequantized properly)")
    m.add_argument("adapter_dir", metavar="ADAPTER_DIR")
    m.add_argument("output", metavar="OUT")
    m.add_argument("--base", help="base model folder (default: the one recorded with the adapter)")
    m.add_argument("--dtype", default="base", choices=["base", "float32", "bfloat16", "float16"])
    m.set_defaults(func=_cmd_merge)
    r = command(sub, "report", "write report.html / report.md for a run",
                description="write report.html and report.md (curves, eval tables, memory, config)")
    r.add_argument("run_dir", metavar="RUN_DIR")
    r.set_defaults(func=_cmd_report)
    p = command(sub, "push", "upload a run's adapter/model, tokenizer, model card and report to the Hub",
                configs=lambda recipe, args: [load(PUSH_CONFIG)],
                description="upload a run's adapter (or merged model), tokenizer, model card and report to the "
                            "Hugging Face Hub (token: HF_TOKEN or `hf auth login`)",
                usage="tunesmith push RUN_DIR --repo user/name [--private] [--revision BRANCH] [--merged] "
                      "[--create-pr] [--license ID] [--datasets a,b] [--base-model ID] [--key VALUE ...]")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(func=_cmd_push)


def _cmd_data_check(args, extra: list[str]) -> int:
    from ..data import check_data

    no_extra(extra, "see tunesmith data check --help")
    labels = [l.strip() for l in args.labels.split(",")] if args.labels else None
    result = check_data(list(args.paths), format=args.format, tokenizer=args.tokenizer,
                        max_length=args.max_length, labels=labels)
    print(json.dumps(result.summary(), default=str) if args.json else result.render())
    return 0 if result.ok else UserError.exit_code


def _cmd_data_prepare(args, extra: list[str]) -> int:
    from ..data import DataPrepConfig, prepare

    cfg = load_config(DataPrepConfig, args.recipe, overrides(args, extra))
    if args.dry_run:
        print_config(cfg)
        return 0
    result = prepare(cfg)
    print(json.dumps(result.card, default=str) if args.json else result.render())
    return 0


def add_data(sub) -> None:
    data = sub.add_parser("data", help="check or prepare datasets", description="check or prepare datasets")
    dsub = data.add_subparsers(dest="data_command", metavar="check|prepare", parser_class=Parser)
    dsub.required = True
    c = command(dsub, "check", "check every row; exit 2 if any problem",
                description="print the detected format, row counts, token-length percentiles and every problem "
                            "(file:line: field ...); exit code 2 if any")
    c.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or save_to_disk folders")
    c.add_argument("--format", help="force a format instead of detecting it")
    c.add_argument("--tokenizer", help="tokenizer/model folder for token lengths")
    c.add_argument("--max-length", type=int, help="report rows longer than this many tokens")
    c.add_argument("--labels", help="comma-separated label set for classification rows")
    c.set_defaults(func=_cmd_data_check)
    p = command(dsub, "prepare", "clean, deduplicate, anonymize, mix and split",
                configs=lambda recipe, args: [load(DATA_CONFIG)], recipe_after=0,
                description="clean, deduplicate, anonymize, mix and split datasets",
                usage="tunesmith data prepare [RECIPE.yaml] [--section.key VALUE ...] [--dry-run]")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=_cmd_data_prepare)
