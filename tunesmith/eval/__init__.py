"""Evaluation: GLUE/SuperGLUE loaders and official metrics, fine-tune and few-shot
protocols, perplexity and exact-match generation accuracy.

from tunesmith.eval import run, markdown_table
print(markdown_table(run(model={"path": "runs/nano/model"}, data={"tasks": "rte", "dir": "data/glue"})))
"""
from .config import EvalConfig
from .evaluate_modules import metric_path
from .generation import exact_match_accuracy, greedy_completions
from .loaders import load_split
from .metrics import benchmark_average, compute, task_score
from .perplexity import perplexity
from .report import EvalResult, TaskResult, markdown_table
from .stage import run
from .tasks import TASKS, Task, get_task, resolve_tasks, task_names

__all__ = ["EvalConfig", "EvalResult", "TASKS", "Task", "TaskResult", "benchmark_average", "compute",
           "exact_match_accuracy", "get_task", "greedy_completions", "load_split", "markdown_table",
           "metric_path", "perplexity", "resolve_tasks", "run", "task_names", "task_score"]
