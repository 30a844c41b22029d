"""The one error type for bad user input. The CLI prints its message on one line and exits 2."""
from __future__ import annotations

import os


class UserError(Exception):
    """Bad input (config, data, paths, model folders): a one-line message that names the
    place (file, line/row, field) and the fix. Never raised for bugs."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | os.PathLike | None = None,
                 line: int | None = None, field: str | None = None, fix: str | None = None):
        self.file, self.line, self.field, self.fix = file, line, field, fix
        where = ""
        if file is not None:
            where = str(file) + (f":{line}" if line is not None else "") + ": "
        what = f'field "{field}" ' if field else ""
        text = f"{where}{what}{message}"
        if fix:
            text += f" ({fix})"
        super().__init__(text.replace("\n", " "))


class TrainingStopped(Exception):
    """Training stopped on purpose (non-finite loss/gradients, disk full): a one-line message
    naming the step and the checkpoint that is still good. The CLI exits 3."""

    exit_code = 3
