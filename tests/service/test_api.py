"""The fine-tuning service through the official openai client, end to end on CPU (tiny model)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import pytest
from service._service import QUICK, chat_rows, client, create_key, dpo_rows, wait_for, write_jsonl


@pytest.fixture(scope="module")
def alice(service, store):
    return client(service.url, store["alice"])


@pytest.fixture(scope="module")
def bob(service, store):
    return client(service.url, store["bob"])


@pytest.fixture(scope="module")
def chat_file(alice, tmp_path_factory):
    path = write_jsonl(tmp_path_factory.mktemp("data") / "chat.jsonl", chat_rows())
    return alice.files.create(file=path.open("rb"), purpose="fine-tune")


@pytest.fixture(scope="module")
def jobs(alice, chat_file, tmp_path_factory):
    """The jobs of this module's tests, queued together so the two workers overlap them."""
    prefs = write_jsonl(tmp_path_factory.mktemp("data") / "prefs.jsonl", dpo_rows())
    pref_file = alice.files.create(file=prefs.open("rb"), purpose="fine-tune")
    held = write_jsonl(tmp_path_factory.mktemp("data") / "held.jsonl", chat_rows(20)[16:])  # rows not in chat_file
    valid_file = alice.files.create(file=held.open("rb"), purpose="fine-tune")
    quick_eval = {**QUICK, "train": {**QUICK["train"], "eval_steps": 2}}
    sft = alice.fine_tuning.jobs.create(model="tiny", training_file=chat_file.id, validation_file=valid_file.id,
                                        suffix="adder", seed=3, hyperparameters={"batch_size": 2},
                                        metadata={"suite": "api", "run": "sft"},
                                        extra_body={"method": {"type": "supervised", "supervised": {"recipe": quick_eval}}})
    dpo = alice.fine_tuning.jobs.create(
        model="tiny", training_file=pref_file.id, seed=1, metadata={"suite": "api", "run": "dpo"},
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "batch_size": 2}, "recipe": QUICK}})
    broken = alice.fine_tuning.jobs.create(model="broken", training_file=chat_file.id,
                                           method={"type": "supervised", "supervised": {"recipe": QUICK}})
    return {"sft": sft, "dpo": dpo, "broken": broken}


@pytest.fixture(scope="module")
def sft_job(jobs):
    return jobs["sft"]


def test_supervised_job_end_to_end(alice, chat_file, sft_job):
    assert chat_file.object == "file" and chat_file.purpose == "fine-tune" and chat_file.bytes > 0
    assert alice.files.retrieve(chat_file.id).filename == "chat.jsonl"
    content = alice.files.content(chat_file.id).content  # the file as uploaded
    assert [json.loads(line) for line in content.decode().splitlines()] == chat_rows()
    assert sft_job.status == "queued" and sft_job.model == "tiny"
    job = wait_for(alice, sft_job.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"ft:tiny:adder:{job.id}" and job.trained_tokens > 0
    events = alice.fine_tuning.jobs.list_events(job.id, limit=100).data
    messages = [e.message for e in reversed(events)]  # newest first, as OpenAI lists them
    assert messages[0].startswith("Created fine-tuning job") and "successfully completed" in messages[-1]
    losses = [e for e in events if e.type == "metrics" and "training loss=" in e.message]
    assert len(losses) == 4
    # the validation_file is the validation split: its loss is reported at eval_steps 2 and 4
    assert job.validation_file and job.validation_file != chat_file.id
    validation = [e.data["step"] for e in events if e.type == "metrics" and "validation loss=" in e.message]
    assert sorted(validation)[:2] == [2, 4], validation
    ckpts = alice.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in ckpts] == [4, 2]
    assert ckpts[0].fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-4"
    assert job.id in [j.id for j in alice.fine_tuning.jobs.list(limit=10).data]
    assert job.fine_tuned_model in [m.id for m in alice.models.list().data]
    r = alice.chat.completions.create(model=job.fine_tuned_model, messages=[{"role": "user", "content": "What is 2 + 3?"}],
                                      temperature=0, max_tokens=4)
    assert r.model == job.fine_tuned_model and r.choices[0].finish_reason in ("stop", "length")
    base = alice.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "What is 2 + 3?"}],
                                         temperature=0, max_tokens=4)
    assert base.choices[0].message.content is not None


def test_dpo_job_with_openai_preference_file(alice, jobs):
    assert jobs["dpo"].method.type == "dpo"
    job = wait_for(alice, jobs["dpo"].id)
    assert job.status == "succeeded", job.error
    r = alice.chat.completions.create(model=job.fine_tuned_model, messages=[{"role": "user", "content": "Say a"}],
                                      temperature=0, max_tokens=3)
    assert r.choices[0].message.role == "assistant"


def test_bad_file_names_file_and_line(alice, store, tmp_path):
    rows = chat_rows(3)
    rows[1]["messages"][1]["role"] = "robot"
    with pytest.raises(openai.BadRequestError) as e:
        alice.files.create(file=write_jsonl(tmp_path / "bad.jsonl", rows).open("rb"), purpose="fine-tune")
    err = e.value.body
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"].startswith("bad.jsonl:2:") and "robot" in err["message"] and err["param"] == "file"
    assert "bad.jsonl" not in [f.filename for f in alice.files.list().data]
    big = write_jsonl(tmp_path / "big.jsonl", chat_rows(600))  # over the service's --max-file-mb 0.05
    with pytest.raises(openai.APIStatusError) as e:
        alice.files.create(file=big.open("rb"), purpose="fine-tune")
    assert e.value.status_code == 413 and e.value.body["code"] == "file_too_large"
    assert not list((store["root"] / "files").glob(".file-*"))  # the partial upload is removed


def test_bad_hyperparameters_name_the_field(alice, chat_file):
    with pytest.raises(openai.BadRequestError) as e:
        alice.fine_tuning.jobs.create(model="tiny", training_file=chat_file.id,
                                      hyperparameters={"learning_rate_multiplier": -1})
    assert e.value.body["param"] == "hyperparameters.learning_rate_multiplier"
    with pytest.raises(openai.BadRequestError) as e:  # the stage config's own check, named by its request field
        alice.fine_tuning.jobs.create(model="tiny", training_file=chat_file.id,
                                      method={"type": "supervised", "supervised": {"recipe": {"train": {"lrr": 1}}}})
    assert e.value.body["param"] == "method.supervised.recipe.train.lrr" and 'did you mean "lr"' in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        alice.fine_tuning.jobs.create(model="tiny", training_file=chat_file.id,
                                      method={"type": "supervised", "supervised": {"recipe": {"run": {"dir": "/"}}}})
    assert e.value.body["param"] == "method.supervised.recipe.run"
    with pytest.raises(openai.BadRequestError) as e:
        alice.fine_tuning.jobs.create(model="gpt-4o", training_file=chat_file.id)
    assert e.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as e:
        alice.fine_tuning.jobs.create(model="tiny", training_file=chat_file.id, method={"type": "dpo"})
    assert e.value.body["param"] == "training_file"  # chat rows for a preference method
    with pytest.raises(openai.BadRequestError) as e:
        alice.fine_tuning.jobs.create(model="tiny", training_file=chat_file.id, validation_file="file-nope")
    assert e.value.body["param"] == "validation_file"


def test_cancel_and_per_key_limits(service, store, alice, jobs, tmp_path):
    """carol may run one job at a time and store 1 KiB: her second job waits while a worker is free;
    cancelling the running job (SIGTERM) lets it start; a queued job is cancelled at once."""
    for job in jobs.values():  # both workers free
        wait_for(alice, job.id)
    carol = client(service.url, create_key(store["root"], "carol", "--max-running", "1", "--storage-mb", "0.001"))
    f = carol.files.create(file=write_jsonl(tmp_path / "c.jsonl", chat_rows(6)).open("rb"), purpose="fine-tune")
    with pytest.raises(openai.APIStatusError) as e:
        carol.files.create(file=write_jsonl(tmp_path / "d.jsonl", chat_rows(6)).open("rb"), purpose="fine-tune")
    assert e.value.status_code == 413 and e.value.body["code"] == "quota_exceeded"
    long = {**QUICK, "train": {**QUICK["train"], "max_steps": 100000, "save_steps": 100000}}
    method = {"type": "supervised", "supervised": {"recipe": long}}
    first, second, third = (carol.fine_tuning.jobs.create(model="tiny", training_file=f.id, method=method)
                            for _ in range(3))
    deadline = time.monotonic() + 120
    while not any(e.type == "metrics" for e in carol.fine_tuning.jobs.list_events(first.id, limit=5).data):
        assert time.monotonic() < deadline and carol.fine_tuning.jobs.retrieve(first.id).status in ("queued", "running")
        time.sleep(0.3)  # training (and many scheduler rounds with a free worker)
    assert carol.fine_tuning.jobs.retrieve(second.id).status == "queued"  # her limit, not the workers'
    assert carol.fine_tuning.jobs.cancel(third.id).status == "cancelled"  # queued: at once
    carol.fine_tuning.jobs.cancel(first.id)
    assert wait_for(carol, first.id, timeout=60).status == "cancelled"
    assert wait_for(carol, second.id, statuses=("running",), timeout=60).status == "running"
    carol.fine_tuning.jobs.cancel(second.id)
    job = wait_for(carol, second.id, timeout=60)
    assert job.status == "cancelled" and job.fine_tuned_model is None


def test_readme_client_example(service, store, tmp_path, monkeypatch, capsys):
    """The README's client example, as written (its URL and key replaced), on a 16-row chat file."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = re.search(r"```python\n(# the service client example.*?)```", readme, re.S).group(1)
    code = code.replace("http://localhost:8000/v1", service.url).replace('"ts-..."', repr(store["alice"]))
    write_jsonl(tmp_path / "chat.jsonl", chat_rows())
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(code, "README.md", "exec"), names)
    out = capsys.readouterr().out
    assert "Fine-tuning job started" in out and "successfully completed" in out
    listed, deleted = out.splitlines()[-2:]  # the metadata filter finds the job; the model is deleted
    assert repr(names["job"].id) in listed and deleted == "True"
    assert not (store["root"] / "jobs" / names["job"].id / "run" / "model").exists()


def test_another_key_sees_nothing(alice, bob, chat_file, sft_job):
    job = wait_for(alice, sft_job.id)
    assert bob.fine_tuning.jobs.list().data == [] and bob.files.list().data == []
    with pytest.raises(openai.NotFoundError):
        bob.fine_tuning.jobs.retrieve(sft_job.id)
    with pytest.raises(openai.NotFoundError):
        bob.fine_tuning.jobs.cancel(sft_job.id)
    with pytest.raises(openai.NotFoundError):
        bob.fine_tuning.jobs.list_events(sft_job.id)
    with pytest.raises(openai.NotFoundError):
        bob.files.retrieve(chat_file.id)
    with pytest.raises(openai.NotFoundError):
        bob.files.content(chat_file.id)
    with pytest.raises(openai.BadRequestError):  # bob cannot train on alice's file
        bob.fine_tuning.jobs.create(model="tiny", training_file=chat_file.id)
    with pytest.raises(openai.NotFoundError):
        bob.chat.completions.create(model=job.fine_tuned_model, messages=[{"role": "user", "content": "hi"}])
    assert job.fine_tuned_model not in [m.id for m in bob.models.list().data]
    with pytest.raises(openai.AuthenticationError):
        client(bob.base_url, "ts-not-a-key").fine_tuning.jobs.list()


def test_no_key_in_logs_or_database(store, jobs, alice):
    """Keys are stored as hashes and never written to a log (the service's, a job's)."""
    wait_for(alice, jobs["sft"].id)
    root = store["root"]
    texts = [p.read_bytes() for p in [*root.glob("service-*.log"), *root.glob("jobs/*/log.txt"),
                                      *root.glob("jobs/*/*.json"), *root.glob("jobs/*/recipe.yaml"),
                                      *root.glob("service.db*")]]
    assert texts and not any(store[k].encode() in t for k in ("alice", "bob") for t in texts)


def test_failed_job_reports_last_error_line(alice, jobs):
    """A job whose process ends with an error is `failed` with the stage's one-line error."""
    job = wait_for(alice, jobs["broken"].id)
    assert job.status == "failed" and job.error.code == "job_failed"
    assert job.error.message.startswith("error: ") and "exit code 2" in job.error.message, job.error.message
    assert "config.json" in job.error.message or "model" in job.error.message


def test_job_metadata_round_trip_filter_and_limits(alice, bob, chat_file, jobs):
    """`metadata` is stored, returned and filtered on (`metadata[k]=v`, all must match, pages too);
    anything over OpenAI's limits is a 400 naming `metadata`."""
    sft, dpo, broken = jobs["sft"], jobs["dpo"], jobs["broken"]
    assert sft.metadata == {"suite": "api", "run": "sft"} and broken.metadata is None
    assert alice.fine_tuning.jobs.retrieve(dpo.id).metadata == {"suite": "api", "run": "dpo"}
    tagged = alice.fine_tuning.jobs.list(metadata={"suite": "api"})
    assert [j.id for j in tagged.data] == [dpo.id, sft.id] and not tagged.has_more
    assert [j.metadata["run"] for j in tagged.data] == ["dpo", "sft"]
    first = alice.fine_tuning.jobs.list(metadata={"suite": "api"}, limit=1)
    assert [j.id for j in first.data] == [dpo.id] and first.has_more
    rest = alice.fine_tuning.jobs.list(metadata={"suite": "api"}, limit=1, after=dpo.id)
    assert [j.id for j in rest.data] == [sft.id] and not rest.has_more
    assert [j.id for j in alice.fine_tuning.jobs.list(metadata={"suite": "api", "run": "sft"}).data] == [sft.id]
    assert alice.fine_tuning.jobs.list(metadata={"suite": "api", "run": "nope"}).data == []
    assert alice.fine_tuning.jobs.list(metadata={"suite": ""}).data == []
    untagged = [j.id for j in alice.fine_tuning.jobs.list(limit=100, extra_query={"metadata": "null"}).data]
    assert broken.id in untagged and sft.id not in untagged and dpo.id not in untagged
    assert bob.fine_tuning.jobs.list(metadata={"suite": "api"}).data == []
    with pytest.raises(openai.BadRequestError) as e:
        alice.fine_tuning.jobs.list(extra_query={"metadata": "null", "metadata[suite]": "api"})
    assert e.value.body["param"] == "metadata"

    cases = {"17 pairs": {f"k{i}": "v" for i in range(17)}, "65 characters": {"k" * 65: "v"},
             "not a string": {"n": 1}, "513 characters": {"k": "v" * 513}, "not list": ["a"]}
    for expected, metadata in cases.items():
        with pytest.raises(openai.BadRequestError) as e:
            alice.fine_tuning.jobs.create(model="tiny", training_file=chat_file.id, metadata=metadata)
        err = e.value.body
        assert err["param"] == "metadata" and err["type"] == "invalid_request_error", err
        assert expected in err["message"] and "at most 16 pairs" in err["message"], err["message"]
    assert len(alice.fine_tuning.jobs.list(metadata={"k0": "v"}).data) == 0  # none of them was created


def test_delete_fine_tuned_model(alice, bob, store, jobs):
    """DELETE /v1/models/{ft model}: the folder goes, the model is no longer listed or served, the job
    stays; a base model is 403, another key's model, an unknown one or a second delete 404."""
    job = wait_for(alice, jobs["dpo"].id)
    name = job.fine_tuned_model
    ask = {"messages": [{"role": "user", "content": "Say a"}], "temperature": 0, "max_tokens": 2}
    alice.chat.completions.create(model=name, **ask)  # loaded into the model pool
    run = store["root"] / "jobs" / job.id / "run"
    folder = Path(json.loads((run / "results.json").read_text())["model_path"])
    assert folder.is_dir() and folder.resolve().is_relative_to(run.resolve())

    for who, model in ((bob, name), (alice, "ft:tiny::ftjob-nope")):
        with pytest.raises(openai.NotFoundError) as e:
            who.models.delete(model)
        assert e.value.body["code"] == "model_not_found" and e.value.body["param"] == "model"
    with pytest.raises(openai.PermissionDeniedError) as e:
        alice.models.delete("tiny")
    assert e.value.body["code"] == "model_not_deletable" and e.value.body["type"] == "invalid_request_error"
    assert folder.is_dir()

    deleted = alice.models.delete(name)
    assert (deleted.id, deleted.object, deleted.deleted) == (name, "model", True)
    assert not folder.exists() and (run / "metrics.jsonl").is_file()  # only the model folder
    assert name not in [m.id for m in alice.models.list().data]
    with pytest.raises(openai.NotFoundError) as e:
        alice.models.retrieve(name)
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        alice.chat.completions.create(model=name, **ask)
    with pytest.raises(openai.NotFoundError):
        alice.completions.create(model=name, prompt="a", max_tokens=2)
    with pytest.raises(openai.NotFoundError):
        alice.models.delete(name)
    kept = alice.fine_tuning.jobs.retrieve(job.id)
    assert kept.status == "succeeded" and kept.fine_tuned_model == name
    # the engine it shared keeps serving the base and the other fine-tuned model
    assert alice.chat.completions.create(model="tiny", **ask).choices[0].message.role == "assistant"
    sft = wait_for(alice, jobs["sft"].id)
    assert alice.chat.completions.create(model=sft.fine_tuned_model, **ask).model == sft.fine_tuned_model
