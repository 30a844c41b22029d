"""The GLUE and SuperGLUE task registry: names, fields, label sets, metrics, prompts, defaults.

Everything tunesmith knows about a task lives in one frozen `Task`: where its local files
are, how their columns map onto the Hub schema (`nyu-mll/glue`, `aps/super_glue`), its
label names in the Hub's id order, the metrics the official scorer reports, which of them
make the leaderboard score, how fine-tuning casts it into classification, its few-shot
prompt and verbalizers, and its training defaults.

>>> task = get_task("glue", "cola")
>>> task.metrics, task.labels
(('matthews_correlation',), ('unacceptable', 'acceptable'))
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..core.errors import UserError

Benchmark = Literal["glue", "superglue"]
Kind = Literal["classification", "regression", "choice"]


@dataclass(frozen=True)
class TrainDefaults:
    """Task-appropriate fine-tuning defaults for a whole train set: small tasks get more epochs
    and smaller batches; LoRA gets a learning rate ~25x full fine-tuning's (its B starts at
    zero and its updates are scaled by alpha/r); `max_length` covers nearly every example of
    the task (dynamic padding makes a generous limit cheap)."""

    epochs: float = 3.0
    lr_full: float = 2e-5
    lr_lora: float = 5e-4
    max_length: int = 128
    batch_size: int = 32


SMALL = TrainDefaults(epochs=10.0, lr_full=2e-5, lr_lora=1e-3, max_length=128, batch_size=16)
LARGE = TrainDefaults(epochs=3.0, lr_full=2e-5, lr_lora=5e-4, max_length=128, batch_size=32)
LONG = TrainDefaults(epochs=5.0, lr_full=2e-5, lr_lora=5e-4, max_length=256, batch_size=16)
SHORT_LARGE = TrainDefaults(epochs=3.0, lr_full=2e-5, lr_lora=5e-4, max_length=64, batch_size=32)  # SST-2
SHORT_SMALL = TrainDefaults(epochs=5.0, lr_full=2e-5, lr_lora=1e-3, max_length=64, batch_size=32)  # CoLA


@dataclass(frozen=True)
class Task:
    """One GLUE/SuperGLUE task. `labels` are class names in the Hub's id order (None for
    regression and ReCoRD); `score_metrics` are averaged into the leaderboard task score;
    `kind="choice"` tasks (COPA, ReCoRD) are scored per candidate and the best one wins."""

    benchmark: Benchmark
    name: str
    title: str
    folder: str
    hub_config: str
    inputs: tuple[str, ...]
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    score_metrics: tuple[str, ...]
    kind: Kind = "classification"
    files: dict[str, str] = field(default_factory=lambda: {"train": "train", "validation": "dev"})
    tsv_columns: dict[str, str | int] = field(default_factory=dict)
    tsv_header: bool = True
    train_from: str | None = None
    in_average: bool = True
    template: str = ""
    verbalizers: tuple[str, ...] = ()
    defaults: TrainDefaults = LARGE

    @property
    def key(self) -> str:
        return f"{self.benchmark}/{self.name}"

    @property
    def num_labels(self) -> int:
        """Outputs of the fine-tuning head: 1 for regression, 2 for per-candidate choice scoring."""
        if self.kind == "regression":
            return 1
        if self.kind == "choice":
            return 2
        return len(self.labels or ())


NLI3 = ("entailment", "neutral", "contradiction")
NLI2 = ("entailment", "not_entailment")
BOOL = ("False", "True")
NLI_PROMPT = "{premise}\nQuestion: {hypothesis} True, False or Neither?\nAnswer:"
GLUE_FILES = {"train": "train", "validation": "dev", "test": "test"}
SG_FILES = {"train": "train", "validation": "val", "test": "test", "fewglue32": "fewglue_train32"}

_GLUE = [
    Task("glue", "cola", "CoLA", "CoLA", "cola", ("sentence",), ("unacceptable", "acceptable"),
         ("matthews_correlation",), ("matthews_correlation",), files=GLUE_FILES,
         tsv_columns={"sentence": 3, "label": 1}, tsv_header=False, defaults=SHORT_SMALL,
         template="{sentence}\nQuestion: Does this sentence make sense?\nAnswer:",
         verbalizers=(" no", " yes")),
    Task("glue", "sst2", "SST-2", "SST-2", "sst2", ("sentence",), ("negative", "positive"),
         ("accuracy",), ("accuracy",), files=GLUE_FILES, defaults=SHORT_LARGE,
         tsv_columns={"sentence": "sentence", "label": "label"},
         template="{sentence}\nQuestion: Is this sentence positive or negative?\nAnswer:",
         verbalizers=(" negative", " positive")),
    Task("glue", "mrpc", "MRPC", "MRPC", "mrpc", ("sentence1", "sentence2"),
         ("not_equivalent", "equivalent"), ("accuracy", "f1"), ("f1", "accuracy"), files=GLUE_FILES,
         tsv_columns={"sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"},
         defaults=SMALL,
         template="Sentence 1: {sentence1}\nSentence 2: {sentence2}\nQuestion: Do both sentences mean "
                  "the same thing?\nAnswer:", verbalizers=(" no", " yes")),
    Task("glue", "stsb", "STS-B", "STS-B", "stsb", ("sentence1", "sentence2"), None,
         ("pearson", "spearmanr"), ("pearson", "spearmanr"), kind="regression", files=GLUE_FILES,
         tsv_columns={"sentence1": "sentence1", "sentence2": "sentence2", "label": "score"},
         defaults=SMALL,
         template="Sentence 1: {sentence1}\nSentence 2: {sentence2}\nQuestion: How similar are the "
                  "sentences, from 0 to 5?\nAnswer:", verbalizers=(" 0", " 1", " 2", " 3", " 4", " 5")),
    Task("glue", "qqp", "QQP", "QQP", "qqp", ("question1", "question2"), ("not_duplicate", "duplicate"),
         ("accuracy", "f1"), ("f1", "accuracy"), files=GLUE_FILES,
         tsv_columns={"question1": "question1", "question2": "question2", "label": "is_duplicate"},
         template="Question 1: {question1}\nQuestion 2: {question2}\nQuestion: Do both questions ask "
                  "the same thing?\nAnswer:", verbalizers=(" no", " yes")),
    Task("glue", "mnli_matched", "MNLI-m", "MNLI", "mnli_matched", ("premise", "hypothesis"), NLI3,
         ("accuracy",), ("accuracy",), files={"train": "train", "validation": "dev_matched",
                                              "test": "test_matched"}, train_from="mnli_matched",
         tsv_columns={"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label"},
         template=NLI_PROMPT, verbalizers=(" True", " Neither", " False")),
    Task("glue", "mnli_mismatched", "MNLI-mm", "MNLI", "mnli_mismatched", ("premise", "hypothesis"), NLI3,
         ("accuracy",), ("accuracy",), files={"train": "train", "validation": "dev_mismatched",
                                              "test": "test_mismatched"}, train_from="mnli_matched",
         tsv_columns={"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label"},
         template=NLI_PROMPT, verbalizers=(" True", " Neither", " False")),
    Task("glue", "qnli", "QNLI", "QNLI", "qnli", ("question", "sentence"), NLI2, ("accuracy",),
         ("accuracy",), files=GLUE_FILES,
         tsv_columns={"question": "question", "sentence": "sentence", "label": "label"},
         template="{question}\n{sentence}\nQuestion: Does this response answer the question?\nAnswer:",
         verbalizers=(" yes", " no")),
    Task("glue", "rte", "RTE", "RTE", "rte", ("sentence1", "sentence2"), NLI2, ("accuracy",),
         ("accuracy",), files=GLUE_FILES, defaults=SMALL,
         tsv_columns={"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"},
         template="{sentence1}\nQuestion: {sentence2} True or False?\nAnswer:",
         verbalizers=(" True", " False")),
    Task("glue", "wnli", "WNLI", "WNLI", "wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment"),
         ("accuracy",), ("accuracy",), files=GLUE_FILES, defaults=SMALL,
         tsv_columns={"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"},
         template="{sentence1}\nQuestion: {sentence2} True or False?\nAnswer:",
         verbalizers=(" False", " True")),
    Task("glue", "ax", "AX", "diagnostic", "ax", ("premise", "hypothesis"), NLI3,
         ("matthews_correlation",), ("matthews_correlation",), files={"test": "diagnostic-full"},
         tsv_columns={"premise": "Premise", "hypothesis": "Hypothesis", "label": "Label"},
         train_from="mnli_matched", in_average=False,
         template=NLI_PROMPT, verbalizers=(" True", " Neither", " False")),
]

_SUPERGLUE = [
    Task("superglue", "boolq", "BoolQ", "BoolQ", "boolq", ("passage", "question"), BOOL, ("accuracy",),
         ("accuracy",), files=SG_FILES, defaults=LONG,
         template="{passage}\nQuestion: {question}?\nAnswer:", verbalizers=(" no", " yes")),
    Task("superglue", "cb", "CB", "CB", "cb", ("premise", "hypothesis"), ("entailment", "contradiction", "neutral"),
         ("accuracy", "f1"), ("f1", "accuracy"), files=SG_FILES, defaults=SMALL,
         template=NLI_PROMPT, verbalizers=(" True", " False", " Neither")),
    Task("superglue", "copa", "COPA", "COPA", "copa", ("premise", "choice1", "choice2", "question"),
         ("choice1", "choice2"),
         ("accuracy",), ("accuracy",), kind="choice", files=SG_FILES, defaults=SMALL),
    Task("superglue", "multirc", "MultiRC", "MultiRC", "multirc", ("paragraph", "question", "answer"), BOOL,
         ("exact_match", "f1_m", "f1_a"), ("f1_a", "exact_match"), files=SG_FILES, defaults=LONG,
         template="{paragraph}\nQuestion: {question}\nIs the correct answer {answer}?\nAnswer:",
         verbalizers=(" no", " yes")),
    Task("superglue", "record", "ReCoRD", "ReCoRD", "record", ("passage", "query"), None,
         ("exact_match", "f1"), ("f1", "exact_match"), kind="choice", files=SG_FILES, defaults=LONG),
    Task("superglue", "rte", "RTE", "RTE", "rte", ("premise", "hypothesis"), NLI2, ("accuracy",),
         ("accuracy",), files=SG_FILES, defaults=SMALL,
         template="{premise}\nQuestion: {hypothesis} True or False?\nAnswer:", verbalizers=(" True", " False")),
    Task("superglue", "wic", "WiC", "WiC", "wic", ("word", "sentence1", "sentence2"), BOOL, ("accuracy",),
         ("accuracy",), files=SG_FILES, defaults=SMALL,
         template="Sentence 1: {sentence1}\nSentence 2: {sentence2}\nQuestion: Is the word '{word}' used "
                  "in the same way in the two sentences above?\nAnswer:", verbalizers=(" no", " yes")),
    Task("superglue", "wsc", "WSC", "WSC", "wsc", ("text", "span1_text", "span2_text"), BOOL, ("accuracy",),
         ("accuracy",), files=SG_FILES, defaults=SMALL,
         template="Passage: {text}\nQuestion: In the passage above, does the pronoun \"{span2_text}\" "
                  "refer to {span1_text}?\nAnswer:", verbalizers=(" no", " yes")),
    Task("superglue", "axb", "AX-b", "AX-b", "axb", ("sentence1", "sentence2"), NLI2,
         ("matthews_correlation",), ("matthews_correlation",), files={"test": "AX-b"}, train_from="rte",
         in_average=False, template="{sentence1}\nQuestion: {sentence2} True or False?\nAnswer:",
         verbalizers=(" True", " False")),
    Task("superglue", "axg", "AX-g", "AX-g", "axg", ("premise", "hypothesis"), NLI2,
         ("accuracy", "gender_parity"), ("gender_parity", "accuracy"), files={"test": "AX-g"},
         train_from="rte", in_average=False,
         template="{premise}\nQuestion: {hypothesis} True or False?\nAnswer:", verbalizers=(" True", " False")),
]

TASKS: dict[str, Task] = {t.key: t for t in _GLUE + _SUPERGLUE}
BENCHMARKS: tuple[str, ...] = ("glue", "superglue")

_ALIASES = {
    "sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli_matched", "mnli_m": "mnli_matched",
    "mnli-mm": "mnli_mismatched", "mnli_mm": "mnli_mismatched", "ax-b": "axb", "ax-g": "axg",
    "diagnostic": "ax", "wsc.fixed": "wsc",
}


def task_names(benchmark: str) -> list[str]:
    """All task names of a benchmark, in leaderboard order.

    >>> task_names("superglue")[:3]
    ['boolq', 'cb', 'copa']
    """
    _check_benchmark(benchmark)
    return [t.name for t in TASKS.values() if t.benchmark == benchmark]


def _check_benchmark(benchmark: str) -> None:
    if benchmark not in BENCHMARKS:
        raise UserError(f'unknown benchmark "{benchmark}"', field="data.benchmark",
                        fix=f"choose one of {', '.join(BENCHMARKS)}")


def get_task(benchmark: str, name: str) -> Task:
    """Look a task up by benchmark and name (case-insensitive; `SST-2`, `mnli-m` and `AX-b`
    spellings work). `mnli` alone is ambiguous: use `resolve_tasks` to expand it.

    >>> get_task("superglue", "AX-g").title
    'AX-g'
    """
    _check_benchmark(benchmark)
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    task = TASKS.get(f"{benchmark}/{key}")
    if task is None:
        import difflib
        names = task_names(benchmark)
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
        hint = f'did you mean "{close[0]}"? ' if close else ""
        raise UserError(f'unknown {benchmark} task "{name}"', field="data.tasks",
                        fix=f"{hint}choose from {', '.join(names)}")
    return task


def resolve_tasks(benchmark: str, names: list[str] | str | None) -> list[Task]:
    """A comma-separated string or list of names -> tasks, without duplicates. `None`/`all`
    means every task; `mnli` means matched and mismatched.

    >>> [t.name for t in resolve_tasks("glue", "sst2,mnli")]
    ['sst2', 'mnli_matched', 'mnli_mismatched']
    """
    if names is None or names == "all" or names == ["all"]:
        return [TASKS[f"{benchmark}/{n}"] for n in task_names(benchmark)]
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    if not names:
        raise UserError("no tasks given", field="data.tasks", fix="e.g. --tasks sst2,rte")
    out: list[Task] = []
    for name in names:
        if name.strip().lower() == "mnli" and benchmark == "glue":
            expanded = [get_task("glue", "mnli_matched"), get_task("glue", "mnli_mismatched")]
        else:
            expanded = [get_task(benchmark, name)]
        out += [t for t in expanded if t not in out]
    return out


def train_task(task: Task) -> Task:
    """The task whose train split fine-tunes `task` (AX -> MNLI, AX-b/AX-g -> RTE)."""
    return TASKS[f"{task.benchmark}/{task.train_from}"] if task.train_from else task
