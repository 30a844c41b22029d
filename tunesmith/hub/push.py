"""`push(run_dir, config)`: the run's adapter (or merged model), tokenizer, a generated model
card and the training report, in one commit to a Hugging Face Hub repository.

Everything is prepared locally first (card, merge, report), then: check the token
(whoami), create the repository, create the branch, commit (or open a pull request). The
token comes from the `token` argument, `HF_TOKEN` or `hf auth login`; it is sent only in
the Authorization header and never written anywhere, error messages included.

push("runs/sft", {"repo": "alice/tiny-sft", "private": True}).url
# -> 'https://huggingface.co/alice/tiny-sft'
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from huggingface_hub import CommitOperationAdd, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from ..core.config import coerce
from ..core.errors import UserError
from ..report.runinfo import read_run
from .card import ADAPTER_RECORD, Artifact, build_card, find_artifact, hub_base_model
from .config import PushConfig

REPORT_FOLDER = "training_report"
T = TypeVar("T")


@dataclass
class PushResult:
    url: str                      # the repository (on its branch), or the pull request
    files: list[str]              # paths in the repository
    revision: str                 # branch committed to (or the PR's target)
    commit: str | None = None
    pr_url: str | None = None
    repo_id: str = ""
    card: str = field(default="", repr=False)


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def _hub(what: str, call: Callable[[], T], token: str, endpoint: str, repo: str | None = None) -> T:
    """Run one Hub call; turn its failures into one-line UserErrors that never show the token."""
    import httpx2

    try:
        return call()
    except OfflineModeIsEnabled:
        raise UserError("HF_HUB_OFFLINE is set, so nothing can be pushed",
                        fix="unset HF_HUB_OFFLINE (or set it to 0) for the push") from None
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        detail = _scrub((e.server_message or str(e)).strip().splitlines()[0][:200], token)
        if status == 401:
            raise UserError(f"the Hub rejected the token (HTTP 401) while trying to {what}", file=endpoint,
                            fix="set HF_TOKEN to a valid write token or run `hf auth login`") from None
        if status == 403:
            raise UserError(f"the token may not {what} (HTTP 403: {detail})", field="repo", file=repo,
                            fix="use a token with write access to that namespace") from None
        raise UserError(f"the Hub refused to {what} (HTTP {status}: {detail})", file=repo or endpoint) from None
    except httpx2.HTTPError as e:
        raise UserError(f"cannot reach the Hub to {what}: {_scrub(str(e), token)[:200]}", file=endpoint,
                        fix="check the network, or HF_ENDPOINT") from None


def _resolve_token(token: str | None) -> str:
    token = token or get_token()
    if not token:
        raise UserError("no Hugging Face token", field="token",
                        fix="set HF_TOKEN=hf_... or run `hf auth login` (a token with write access)")
    return token


def _folder_ops(folder: Path, prefix: str = "", skip: set[str] | None = None) -> dict[str, Path]:
    return {f"{prefix}{p.relative_to(folder).as_posix()}": p for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
            and p.name not in (skip or set())}


def _adapter_metadata(artifact: Artifact, base: str | None) -> dict[str, bytes]:
    """adapter_config.json / tunesmith_adapter.json as uploaded: the base is the Hub id when
    known (so AutoPeftModel* can load the repo), never a path on this machine."""
    out = {}
    peft_cfg = json.loads((artifact.folder / "adapter_config.json").read_text())
    if base:
        peft_cfg["base_model_name_or_path"] = base
    out["adapter_config.json"] = (json.dumps(peft_cfg, indent=2) + "\n").encode()
    if (artifact.folder / ADAPTER_RECORD).is_file():
        record = dict(artifact.record, base=base)
        out[ADAPTER_RECORD] = (json.dumps(record, indent=2) + "\n").encode()
    return out


def _uploads(run_dir: Path, artifact: Artifact, cfg: PushConfig, model_folder: Path, card: str,
             base: str | None, merged: bool) -> dict[str, Path | bytes]:
    files: dict[str, Path | bytes] = dict(_folder_ops(model_folder))
    if artifact.is_adapter and not merged:
        files.update(_adapter_metadata(artifact, base))
    tokenizer = artifact.run.path / "tokenizer"
    if tokenizer.is_dir():
        for name, path in _folder_ops(tokenizer).items():
            files.setdefault(name, path)
    files["README.md"] = card.encode()
    if cfg.report:
        for name in ("report.md", "report.html", "config.yaml", "results.json"):
            if (run_dir / name).is_file():
                files[f"{REPORT_FOLDER}/{name}"] = run_dir / name
        if (run_dir / "plots").is_dir():
            files.update(_folder_ops(run_dir / "plots", f"{REPORT_FOLDER}/plots/"))
    return files


def push(run_dir: str | os.PathLike, config: PushConfig | dict[str, Any], token: str | None = None,
         endpoint: str | None = None) -> PushResult:
    """Push the run at `run_dir` as `config` says; returns the repository URL, the files
    uploaded and the revision. `endpoint` defaults to huggingface_hub's (HF_ENDPOINT).

    push("runs/sft", {"repo": "alice/tiny-sft", "revision": "v1", "create_pr": True}).pr_url
    # -> 'https://huggingface.co/alice/tiny-sft/discussions/1'
    """
    cfg = coerce(PushConfig, config)
    run_path = Path(run_dir)
    artifact = find_artifact(read_run(run_path))      # fail on a run without a model before any call
    token = _resolve_token(token)
    api = HfApi(endpoint=endpoint, token=token)
    endpoint = api.endpoint
    user = _hub("check the token", lambda: api.whoami(), token, endpoint)
    if "/" not in cfg.repo:
        cfg = cfg.model_copy(update={"repo": f"{user['name']}/{cfg.repo}"})
    repo_id = cfg.repo
    merged = cfg.merged and artifact.is_adapter
    if cfg.report:
        from ..report import write_report

        write_report(run_path)
    info = read_run(run_path)
    artifact = find_artifact(info)
    base = hub_base_model(artifact, cfg)
    card = str(build_card(info, artifact, cfg, merged=merged,
                          report_link=f"{REPORT_FOLDER}/report.md" if cfg.report else None))
    with tempfile.TemporaryDirectory(prefix="tunesmith-push-") as scratch:
        model_folder = artifact.folder
        if merged:
            from ..adapters.merge import merge

            model_folder = merge(artifact.folder, Path(scratch) / "merged")
        files = _uploads(run_path, artifact, cfg, model_folder, card, base, merged)

        _hub("create the repository", lambda: api.create_repo(repo_id, private=cfg.private, exist_ok=True),
             token, endpoint, repo_id)
        revision = cfg.revision or "main"
        if revision != "main":
            _hub(f"create the branch {revision}",
                 lambda: api.create_branch(repo_id, branch=revision, exist_ok=True), token, endpoint, repo_id)
        ops = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=src if isinstance(src, bytes) else str(src))
               for name, src in sorted(files.items())]
        commit = _hub("commit the files", lambda: api.create_commit(
            repo_id, ops, commit_message=cfg.commit_message, revision=revision, create_pr=cfg.create_pr),
            token, endpoint, repo_id)
    url = f"{endpoint}/{repo_id}" + (f"/tree/{revision}" if revision != "main" else "")
    return PushResult(url=commit.pr_url or url, files=sorted(files), revision=revision, commit=commit.oid,
                      pr_url=commit.pr_url, repo_id=repo_id, card=card)
