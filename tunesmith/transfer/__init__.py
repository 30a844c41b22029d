"""Task fine-tuning (transfer learning): a classification or regression head with an adapter,
trained on a CSV/TSV/JSONL table through the stage lifecycle (`tunesmith finetune`)."""
from .stage import FinetuneConfig, FinetuneResult, finetune

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune"]
