"""What every stage function returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class StageResult:
    run_dir: Path
    model_path: Path
    metrics: dict = field(default_factory=dict)
