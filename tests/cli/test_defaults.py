"""`--help`, `tunesmith init`, `tunesmith plan` and the stage itself agree on every default of every
stage: each reads the stage's config class, whose blocks carry the stage's own defaults
(`train: TrainSection = Field(default_factory=lambda: TrainSection(lr=3e-3, max_steps=400))`)."""
from __future__ import annotations

import re

import pytest
import yaml

from helpers import assert_user_error, run_cli_here
from tunesmith.adapters.recipe_plan import ASSUMED_SEQ_LEN, PlanConfig, plan_recipe, plan_stage
from tunesmith.core.config import REQUIRED, build, config_keys, deep_merge, load_config, lookup, nest
from tunesmith.recipes import starter_recipe
from tunesmith.stages import STAGES, training_stages

HELP_ROW = re.compile(r"^  (--\S+)\s+.*\[default: (.*)\]$")
PLAN_HEAD = re.compile(r"^# predicted peak memory of (\w+) \((.*)\):$", re.M)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A model folder as the planner reads it (config.json)."""
    from tunesmith.pretraining.presets import make_config, resolve_shape

    folder = tmp_path_factory.mktemp("model")
    make_config("llama", resolve_shape("nano", vocab=320)).save_pretrained(folder)
    return str(folder)


def _given(name: str, model_dir: str, with_model: bool = False) -> dict:
    """What a user must give the stage (its required keys; with `with_model`, its model), nothing else."""
    stage = STAGES[name]
    keys = [k.key for k in config_keys(stage.config_class()) if k.default is REQUIRED]
    if with_model and name != "pretrain":
        keys.append(stage.model_key)
    return nest({key: model_dir for key in keys})


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {prefix + k: v})
    return out


@pytest.mark.parametrize("name", list(STAGES))
def test_help_and_init_show_the_defaults_the_stage_uses(name, model_dir, capsys):
    cls = STAGES[name].config_class()
    given = _given(name, model_dir)
    cfg = build(cls, given)  # what the stage runs with when the user gives only what it needs
    leaves = [k for k in config_keys(cls) if not k.section]

    proc = run_cli_here(capsys, name, "--help")
    assert proc.returncode == 0, proc.stderr
    shown = dict(m.groups() for m in map(HELP_ROW.match, proc.stdout.splitlines()) if m)
    assert set(shown) == {f"--{k.key}" for k in leaves}
    for k in leaves:
        expected = "required" if k.default is REQUIRED else repr(lookup(cfg, k.key))
        assert shown[f"--{k.key}"] == expected, (name, k.key)

    recipe = yaml.safe_load(starter_recipe(name))
    written, used = _flat(recipe), _flat(cfg.model_dump(mode="json"))
    for k in leaves:
        if k.default is not REQUIRED:
            assert written[k.key] == used[k.key], (name, k.key)
    # and the starter recipe, filled in, is exactly the stage's defaults
    assert load_config(cls, None, deep_merge(recipe, given)).model_dump() == cfg.model_dump()


@pytest.mark.parametrize("name", training_stages())
def test_plan_uses_the_stage_defaults(name, model_dir, capsys):
    stage = STAGES[name]
    given = _given(name, model_dir, with_model=True)
    cfg = build(stage.config_class(), given)
    adapter = getattr(cfg, "adapter", None)
    expected = {
        "batch_size": getattr(cfg.train, "micro_batch_size", None) or cfg.train.batch_size,
        "seq_len": stage.seq_len(cfg) or ASSUMED_SEQ_LEN,
        "method": adapter.method if adapter else "full",
        "quantize": adapter.resolved_quantize() if adapter else "none",
        "gradient_checkpointing": cfg.train.gradient_checkpointing,
        "optimizer": adapter.optimizer if adapter and stage.adapter_optimizer else "adamw",
    }
    planned = plan_recipe(given, PlanConfig(stage=name)).main.settings
    assert {k: planned[k] for k in expected} == expected
    assert plan_stage(name, cfg).main.settings == planned       # what --dry-run prints

    flags = [f"--{stage.model_key}", model_dir] if name != "pretrain" else []
    if name == "distill":
        flags += ["--teacher.path", model_dir]
    proc = run_cli_here(capsys, "plan", "--stage", name, *flags)
    assert proc.returncode == 0, proc.stderr
    head = PLAN_HEAD.search(proc.stdout)
    assert head and head.group(1) == name, proc.stdout
    printed = dict(kv.split("=", 1) for kv in head.group(2).split(", "))
    assert printed["batch_size"] == str(expected["batch_size"]) and printed["seq_len"] == str(expected["seq_len"])


def test_init_then_dry_run_trains_as_the_bare_command(tmp_path, capsys):
    """The issue's case: `tunesmith init pretrain -o p.yaml && tunesmith pretrain p.yaml --dry-run`
    trains at the lr of `tunesmith pretrain --dry-run` (3e-3), not TrainSection's generic 3e-4."""
    recipe = tmp_path / "p.yaml"
    assert run_cli_here(capsys, "init", "pretrain", "-o", str(recipe)).returncode == 0
    from_init = yaml.safe_load(run_cli_here(capsys, "pretrain", str(recipe), "--dry-run").stdout)
    bare = yaml.safe_load(run_cli_here(capsys, "pretrain", "--dry-run").stdout)
    assert from_init["train"]["lr"] == bare["train"]["lr"] == 3e-3
    assert from_init == bare


def test_plan_counts_the_adapter_optimizer_of_every_stage_that_has_an_adapter(model_dir, capsys):
    sft = plan_recipe({"model": {"path": model_dir}, "adapter": {"optimizer": "adamw_8bit"}}, PlanConfig(stage="sft"))
    assert sft.main.settings["optimizer"] == "adamw_8bit" and not sft.notes
    finetune = plan_recipe({"model": model_dir, "adapter": {"optimizer": "adamw_8bit"}}, PlanConfig(stage="finetune"))
    assert finetune.main.settings["optimizer"] == "adamw_8bit" and not finetune.notes
    fits = plan_recipe({"model": {"path": model_dir}}, PlanConfig(stage="dpo", memory="64GB")).options
    assert fits and "adamw_8bit" in {p.settings["optimizer"] for p in fits}
    proc = run_cli_here(capsys, "plan", "--stage", "sft", "--model.path", model_dir, "--adapter.optimizer",
                        "adamw_8bit", "--train.gradient_checkpointing", "true", "--batch-size", "2")
    assert proc.returncode == 0, proc.stderr
    assert "optimizer=adamw_8bit," in proc.stdout and "gradient_checkpointing=True" in proc.stdout
    assert "batch_size=2," in proc.stdout and "# note:" not in proc.stdout


@pytest.mark.parametrize("recipe, stage", [
    ({}, "pretrain"),                                              # no model folder: the preset is built
    ({"model": {"size": "small"}, "train": {"max_steps": 5}}, "pretrain"),
    ({"model": {"path": "m"}, "dpo": {"beta": 0.2}}, "dpo"),         # the stage's own block
    ({"model": {"path": "m"}, "teacher": {"path": "t"}}, "distill"),
    ({"stage": "reward", "model": {"path": "m"}}, "reward"),        # a pipeline entry saved alone
])
def test_plan_finds_the_recipe_stage(recipe, stage):
    from tunesmith.adapters.recipe_plan import stage_of

    assert stage_of(recipe) == stage


def test_plan_asks_for_the_stage_when_the_recipe_does_not_say(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {path: runs/base/model}\n")
    assert_user_error(run_cli_here(capsys, "plan", str(recipe)), "cannot tell which stage", "--stage")
    assert_user_error(run_cli_here(capsys, "plan", "--stage", "eval"), "stage", "pretrain")
    assert_user_error(run_cli_here(capsys, "plan", "--stage", "sft"), '"model"', "required")


def test_plan_a_pipeline_stage_by_stage(tmp_path, capsys):
    """Each stage on the model the stage before it trains, as `tunesmith run` feeds it."""
    from tunesmith.adapters.recipe_plan import plan_pipeline

    recipe = tmp_path / "pipeline.yaml"
    assert run_cli_here(capsys, "init", "run", "-o", str(recipe)).returncode == 0
    plans = plan_pipeline(yaml.safe_load(recipe.read_text()))
    assert [p.stage for p in plans] == ["pretrain", "sft", "dpo"]
    assert len({p.main.settings["total_params"] for p in plans}) == 1   # one model all along
    assert [p.main.settings["seq_len"] for p in plans] == [128, 64, 64]  # each stage's own length
    proc = run_cli_here(capsys, "plan", str(recipe))
    assert proc.returncode == 0 and len(PLAN_HEAD.findall(proc.stdout)) == 3, proc.stderr
    assert_user_error(run_cli_here(capsys, "plan", str(recipe), "--train.lr", "1"), "planned as written")
    assert_user_error(run_cli_here(capsys, "plan", "--device", "tpu"), '"device"', "cpu")


def test_gradient_checkpointing_is_one_key_and_the_old_adapter_key_still_reads(model_dir):
    """train.gradient_checkpointing is the switch in every stage; a recipe's adapter.gradient_checkpointing
    (its home before) lands there."""
    from tunesmith.alignment.sft import SFTConfig
    from tunesmith.adapters import AdapterConfig

    assert "gradient_checkpointing" not in AdapterConfig.model_fields
    old = build(SFTConfig, {"model": {"path": model_dir}, "adapter": {"gradient_checkpointing": True, "rank": 4}})
    assert old.train.gradient_checkpointing and old.adapter.rank == 4
    both = build(SFTConfig, {"model": {"path": model_dir}, "adapter": {"gradient_checkpointing": True},
                             "train": {"gradient_checkpointing": False}})
    assert not both.train.gradient_checkpointing   # the new key wins
