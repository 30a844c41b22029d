"""The stage table (`tunesmith/stages.py`) is the one list of stages: the CLI's commands, the
pipeline's `stage:` names, the public API (`ts.<stage>`, `ts.<Config>`) and `tunesmith init` agree
with it (as litgpt asserts its PARSER_DATA matches its parser), and nothing else lists them."""
from __future__ import annotations

import argparse
import inspect
import re
import subprocess
import sys

import pytest

import tunesmith as ts
from helpers import REPO, assert_user_error, run_cli_here
from tunesmith.cli import build_parser
from tunesmith.core.config import Section
from tunesmith.pipeline import wire_model
from tunesmith.recipes import STARTERS
from tunesmith.stages import STAGES, api_name, load

TOOLS = {"eval", "plan", "merge", "report", "push", "data", "init", "run", "demo", "serve", "chat", "service"}


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_cli_has_one_command_per_stage_and_the_tools():
    commands = _commands(build_parser())
    assert set(commands) == set(STAGES) | TOOLS
    for name, stage in STAGES.items():
        assert commands[name].configs(None, []) == [stage.config_class()]
        if stage.kind == "train":
            assert commands[name].get_default("func").__qualname__.startswith("_cmd_stage")
    assert "eval" in STAGES and STAGES["eval"].kind == "eval"


@pytest.mark.parametrize("name", list(STAGES))
def test_api_exposes_each_stage_function_and_config(name):
    stage = STAGES[name]
    assert getattr(ts, api_name(name)) is load(stage.function)
    assert getattr(ts, stage.config_name) is stage.config_class()
    assert {api_name(name), stage.config_name} <= set(ts.__all__)
    assert issubclass(stage.config_class(), Section)
    assert next(iter(inspect.signature(load(stage.function)).parameters)) == "config"


def test_init_and_pipelines_take_every_stage(tmp_path, capsys):
    assert STARTERS == [*STAGES, "data", "run"]
    recipe = tmp_path / "p.yaml"
    recipe.write_text("stages:\n  - {stage: ppo}\n")
    assert_user_error(run_cli_here(capsys, "run", str(recipe)), 'unknown or missing stage type "ppo"',
                      ", ".join(STAGES))
    for name, stage in STAGES.items():  # the previous stage's model goes where the stage reads it
        wired = wire_model(name, {}, tmp_path)
        key, *rest = stage.model_key.split(".")
        assert (wired[key][rest[0]] if rest else wired[key]) == str(tmp_path)


def test_nothing_else_lists_the_stages():
    """No module but stages.py names a stage's function or config by its "module:attribute" reference."""
    refs = {ref for s in STAGES.values() for ref in (s.function, s.config)}
    for path in (REPO / "tunesmith").rglob("*.py"):
        if path.name != "stages.py":
            text = path.read_text()
            assert not [ref for ref in refs if ref in text], path
    assert not re.search(r"\bSTAGE_FUNCTIONS\b|\b_API\b", "".join(
        p.read_text() for p in (REPO / "tunesmith").rglob("*.py")))


def test_reading_the_table_imports_no_stage_module():
    """`import tunesmith` and the CLI's top-level --help stay fast: no torch, no stage module."""
    code = ("import sys, tunesmith, tunesmith.cli as c; c.build_parser().format_help(); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('tunesmith.alignment', "
            "'tunesmith.pretraining', 'tunesmith.eval', 'tunesmith.adapters', 'transformers'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_readme_lists_the_stages_of_the_table():
    """Where the README spells the stages out (command table, pipelines), it names exactly the table's."""
    text = (REPO / "README.md").read_text()
    row = re.search(r"^\| `tunesmith ((?:\w+\\\|)+\w+) \[RECIPE\]", text, re.M).group(1).split("\\|")
    assert {"pretrain", *row} == {n for n, s in STAGES.items() if s.kind == "train"}
    listed = re.search(r"`stage:` is any stage of the stage table \(([^)]*)\)", text, re.S).group(1)
    assert re.findall(r"`(\w+)`", listed) == list(STAGES)


def test_no_subpackage_shadows_a_public_name():
    """`import tunesmith.<x>` binds attribute `x` on the package: a subpackage named like a public
    function (`ts.finetune`) would replace it with a module."""
    import pkgutil

    import tunesmith as ts
    modules = {m.name for m in pkgutil.iter_modules(ts.__path__)}
    assert not modules & set(ts.__all__), modules & set(ts.__all__)


def test_a_training_stage_imports_matplotlib_only_for_its_report():
    """matplotlib (~25 MB resident) is imported when a report draws its curves, not by the stage
    modules, the lifecycle, the Hub or report packages a training process holds while it trains."""
    code = ("import sys, tunesmith.lifecycle, tunesmith.alignment.sft, tunesmith.pretraining.stage, tunesmith.hub, "
            "tunesmith.report; print(sorted(m for m in sys.modules if m.startswith('matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
