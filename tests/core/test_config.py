import pytest
from tunesmith.core.config import coerce, load_config, parse_overrides
from tunesmith.core.errors import UserError
from tunesmith.pretraining import PretrainConfig


def test_overrides_parse_types_and_nesting():
    out = parse_overrides(["--train.lr", "3e-4", "--model.size=small", "--data.train", "[a.txt, b.txt]",
                           "--curriculum.enabled", "true"])
    assert out == {"train": {"lr": "3e-4"}, "model": {"size": "small"},
                   "data": {"train": ["a.txt", "b.txt"]}, "curriculum": {"enabled": True}}
    cfg = load_config(PretrainConfig, None, ["--train.lr", "3e-4"])
    assert cfg.train.lr == pytest.approx(3e-4)


def test_recipe_then_flags_override(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {size: small, family: gpt2}\ntrain: {lr: 0.001, max_steps: 7}\n")
    cfg = load_config(PretrainConfig, recipe, ["--train.max_steps", "9"])
    assert (cfg.model.size, cfg.model.family, cfg.train.lr, cfg.train.max_steps) == ("small", "gpt2", 0.001, 9)
    assert cfg.data.block_size == PretrainConfig().data.block_size  # defaults come from one place


@pytest.mark.parametrize("overrides, fragments", [
    (["--train.lrr", "1"], ['unknown config key "train.lrr"', 'did you mean "lr"']),
    (["--trian.lr", "1"], ['unknown config key "trian"', 'did you mean "train"']),
    (["--train.lr", "-1"], ['"train.lr"', "greater than 0"]),
    (["--model.family", "bert"], ['"model.family"', "'llama'"]),
    (["--train.max_steps"], ["has no value"]),
])
def test_bad_config_names_key_and_fix(overrides, fragments):
    with pytest.raises(UserError) as e:
        load_config(PretrainConfig, None, overrides)
    for f in fragments:
        assert f in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_yaml_names_file_and_line(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("train:\n  lr: [1,\n")
    with pytest.raises(UserError, match=r"bad.yaml:\d+: invalid YAML"):
        load_config(PretrainConfig, recipe)


def test_api_accepts_recipe_path_dict_and_object(tmp_path):
    from tunesmith.core.config import coerce

    recipe = tmp_path / "r.yaml"
    recipe.write_text("train: {lr: 0.002}\n")
    assert coerce(PretrainConfig, str(recipe), model={"size": "small"}).train.lr == 0.002
    assert coerce(PretrainConfig, {"train": {"lr": 0.5}}).train.lr == 0.5
    cfg = PretrainConfig()
    assert coerce(PretrainConfig, cfg) is cfg
    with pytest.raises(UserError, match='did you mean "lr"'):
        coerce(PretrainConfig, {"train": {"lrate": 1}})


def test_a_stage_keeps_its_own_section_defaults_when_the_user_sets_other_keys():
    from tunesmith.alignment.sft import SFTConfig
    from tunesmith.pretraining import PretrainConfig

    assert coerce(PretrainConfig, {"train": {"max_steps": 5}}).train.lr == PretrainConfig().train.lr == 3e-3
    assert load_config(PretrainConfig, None, ["--train.max_steps", "5"]).train.lr == 3e-3
    assert coerce(PretrainConfig, {"train": {"lr": 1e-4}}).train.max_steps == 400
    sft = coerce(SFTConfig, {"model": {"path": "m"}, "train": {"max_steps": 5}})
    assert (sft.train.lr, sft.train.warmup_steps, sft.train.max_steps) == (1e-3, 10, 5)
    again = coerce(PretrainConfig, coerce(PretrainConfig, {"train": {"max_steps": 7}}), run={"dir": "x"})
    assert (again.train.lr, again.train.max_steps, again.run.dir) == (3e-3, 7, "x")
