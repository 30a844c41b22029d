"""`tunesmith push RUN_DIR --repo user/name ...` as the README writes it, against the local fake Hub
(tests/hub/fake_hub.py): every flag of the push config reaches the Hub, switches work bare."""
from __future__ import annotations

from hub.fake_hub import TOKEN, subprocess_env
from huggingface_hub import ModelCard

from helpers import assert_user_error, run_cli, run_cli_here


def test_push_command_line_with_every_kind_of_flag(sft_run, hub, tmp_path):
    """A real `tunesmith push` process, endpoint and token from the environment as a user sets them."""
    proc = run_cli("push", str(sft_run), "--repo", "alice/tiny-sft", "--private", "--revision", "v1",
                   "--base-model", "alice/nano", "--license", "mit", "--datasets", "alice/d1,alice/d2",
                   "--commit-message", "First adapter", env=subprocess_env(hub.url, tmp_path / "home"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    repo = hub.repos["alice/tiny-sft"]
    assert repo.private is True and repo.commits[0]["summary"] == "First adapter"
    files = repo.branches["v1"]
    assert f"pushed {len(files)} files to {hub.url}/alice/tiny-sft/tree/v1 (revision v1)" in proc.stdout
    card = ModelCard(files["README.md"].decode())
    assert card.data.base_model == "alice/nano" and card.data.license == "mit"
    assert card.data.datasets == ["alice/d1", "alice/d2"]
    assert TOKEN not in proc.stdout + proc.stderr


def test_push_switches_and_flags_before_the_run_dir(sft_run, hub, online, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    proc = run_cli_here(capsys, "push", "--repo", "alice/tiny-merged", str(sft_run), "--merged", "--create-pr",
                        "--report", "false")
    assert proc.returncode == 0, proc.stderr
    repo = hub.repos["alice/tiny-merged"]
    assert repo.branches["main"] == {} and len(repo.pull_requests) == 1   # --create-pr
    assert f"pull request: {hub.url}/alice/tiny-merged/discussions/1" in proc.stdout
    assert hub.requests[-1].query == {"create_pr": ["1"]}
    assert repo.private is False                                          # --private not given
    bad = run_cli_here(capsys, "push", str(sft_run), "--repo", "alice/a/b")
    assert_user_error(bad, '"repo"', "user/name")
    assert_user_error(run_cli_here(capsys, "push", str(sft_run), "--repo"), '"--repo" has no value')
