"""EvalConfig is filled by dotted flags and recipes like every stage's config."""
import pytest

from tunesmith.core.config import load_config
from tunesmith.core.errors import UserError
from tunesmith.eval import EvalConfig


def test_dotted_overrides_fill_the_config():
    cfg = load_config(EvalConfig, None, ["--protocol", "finetune", "--data.tasks", "sst2,rte",
                                         "--finetune.adapter.rank", "4", "--finetune.seeds", "[1, 2, 3]"])
    assert (cfg.protocol, cfg.data.tasks, cfg.finetune.adapter.rank, cfg.finetune.seeds) == \
        ("finetune", "sst2,rte", 4, [1, 2, 3])
    assert cfg.fewshot.k == 0 and cfg.data.split == "validation"


def test_unknown_and_bad_keys_are_user_errors(tmp_path):
    with pytest.raises(UserError, match='unknown config key "fewshot.kk"; did you mean "k"'):
        load_config(EvalConfig, None, ["--fewshot.kk", "4"])
    recipe = tmp_path / "eval.yaml"
    recipe.write_text("protocol: zeroshot\n")
    with pytest.raises(UserError, match='eval.yaml: config key "protocol"'):
        load_config(EvalConfig, recipe)
