"""OpenAI job requests -> tunesmith stage recipes: the mapping, and the stage configs' own checks."""
from __future__ import annotations

import pytest

from tunesmith.service.methods import RequestError, build_recipe, model_name, stage_defaults, stage_of


def recipe(kind: str, settings: dict | None = None, hyperparameters: dict | None = None, rows: int = 100):
    _, stage = stage_of({"type": kind})
    return build_recipe(stage, kind, base="/models/base", data_input={"path": "/store/files/f.jsonl"}, rows=rows,
                        seed=7, hyperparameters=hyperparameters or {}, settings=settings or {}, run_dir="/store/run")


def test_openai_hyperparameters_map_onto_the_stage_config():
    data, cfg = recipe("supervised", hyperparameters={"batch_size": 4, "learning_rate_multiplier": 2, "n_epochs": 3})
    assert cfg.train.batch_size == 4 and cfg.train.max_steps == 75  # 3 epochs x 100 rows / 4
    assert cfg.train.lr == pytest.approx(2 * stage_defaults("sft").lr) and cfg.train.seed == 7
    assert cfg.run.dir == "/store/run" and cfg.model.path == "/models/base"
    _, auto = recipe("supervised", hyperparameters={"batch_size": "auto", "n_epochs": "auto"})
    assert auto.train.max_steps == stage_defaults("sft").max_steps  # "auto": the stage's own default
    _, dpo = recipe("dpo", {"hyperparameters": {"beta": 0.3}})
    assert dpo.dpo.beta == 0.3 and dpo.train.lr == stage_defaults("dpo").lr


def test_tunesmith_methods_and_recipe_fragments():
    _, kto = recipe("kto", {"recipe": {"kto": {"desirable_weight": 1.5}, "adapter": {"rank": 32}}})
    assert type(kto).__name__ == "KTOConfig" and kto.kto.desirable_weight == 1.5 and kto.adapter.rank == 32
    _, grpo = recipe("grpo", {"hyperparameters": {"beta": 0.01}, "recipe": {"rewards": {"functions": ["format"]}}})
    assert type(grpo).__name__ == "RLHFConfig" and grpo.rl.method == "grpo" and grpo.rl.beta == 0.01
    assert recipe("rloo")[1].rl.method == "rloo"
    _, orpo = recipe("orpo", {"hyperparameters": {"beta": 0.5}})
    assert orpo.orpo.beta == 0.5
    assert type(recipe("reward")[1]).__name__ == "RewardConfig"
    assert model_name("tiny", "adder", "ftjob-1") == "ft:tiny:adder:ftjob-1"


@pytest.mark.parametrize("kind, settings, hyper, param", [
    ("supervised", {"hyperparameters": {"beta": 0.1}}, None, "method.supervised.hyperparameters.beta"),
    ("supervised", None, {"epochs": 2}, "hyperparameters.epochs"),
    ("supervised", None, {"batch_size": 2.5}, "hyperparameters.batch_size"),
    ("supervised", None, {"batch_size": 0}, "hyperparameters.batch_size"),
    ("dpo", {"recipe": {"dpo": {"loss_type": "nope"}}}, None, "method.dpo.recipe.dpo.loss_type"),
    ("dpo", {"recipe": {"train": {"max_steps": 0}}}, None, "method.dpo.recipe.train.max_steps"),
    ("kto", {"recipe": {"data": {"inputs": [{"path": "/etc/passwd"}]}}}, None, "method.kto.recipe.data.inputs"),
    ("grpo", {"recipe": {"rewards": {"functions": ["os:system"]}}}, None, "method.grpo.recipe.rewards.functions"),
    ("supervised", {"recipe": {"model": {"trust_remote_code": True}}}, None,
     "method.supervised.recipe.model.trust_remote_code"),
    ("supervised", {"lr": 1}, None, "method.supervised.lr"),
])
def test_invalid_values_name_the_request_field(kind, settings, hyper, param):
    with pytest.raises(RequestError) as e:
        recipe(kind, settings, hyper)
    assert e.value.param == param and str(e.value)


def test_unknown_method():
    with pytest.raises(RequestError) as e:
        stage_of({"type": "ppo"})
    assert e.value.param == "method.type" and "supervised" in str(e.value)
