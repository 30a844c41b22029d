"""The `push_to_hub:` block: where and how a run goes to the Hugging Face Hub.

The same Section serves `tunesmith push RUN_DIR --repo ...`, `ts.push(run_dir, {...})` and
a `push_to_hub: {repo: user/name}` block in any stage recipe (pushed when the stage ends).
"""
from __future__ import annotations

from pydantic import Field, field_validator

from ..core.config import Section


def _check_repo_id(value: str) -> str:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if value.count("/") > 1:
        raise ValueError(f"'{value}' is not a Hub repository id; write user/name (or just name)")
    try:
        validate_repo_id(value)
    except HFValidationError as e:
        raise ValueError(f"'{value}' is not a valid Hub repository id: {str(e).splitlines()[0]}") from None
    return value


class PushConfig(Section):
    repo: str = Field(description="Hub repository id, user/name (a bare name goes under the token's user)")
    private: bool = Field(False, description="create the repository private (an existing repo keeps its visibility)")
    revision: str | None = Field(None, description="branch to push to, created if missing (default: main)")
    merged: bool = Field(False, description="upload the adapter merged into its base (a full model) instead of the adapter")
    create_pr: bool = Field(False, description="open a pull request instead of committing to the branch")
    commit_message: str = Field("Upload with tunesmith", min_length=1, description="commit title")
    license: str | None = Field(None, description="license id for the model card, e.g. apache-2.0 (default: none given)")
    datasets: list[str] = Field(default_factory=list, description="Hub dataset ids the model was trained on, for the card")
    base_model: str | None = Field(
        None, description="Hub id of the base model for the card (default: the adapter's base when it is a Hub id)")
    eval_runs: list[str] = Field(
        default_factory=list, description="eval run directories whose results go into the card's model-index")
    report: bool = Field(True, description="write the run report and upload it under training_report/")

    _repo_ok = field_validator("repo")(_check_repo_id)
