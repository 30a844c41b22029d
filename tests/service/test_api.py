"""The fine-tuning service through the official openai client, end to end on CPU (tiny model)."""
from __future__ import annotations

import time

import openai
import pytest
from service._service import QUICK, chat_rows, client, dpo_rows, wait_for, write_jsonl


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
def sft_job(alice, chat_file):
    return alice.fine_tuning.jobs.create(model="tiny", training_file=chat_file.id, suffix="adder", seed=3,
                                         hyperparameters={"batch_size": 2},
                                         extra_body={"method": {"type": "supervised",
                                                                "supervised": {"recipe": QUICK}}})


def test_supervised_job_end_to_end(alice, chat_file, sft_job):
    assert chat_file.object == "file" and chat_file.purpose == "fine-tune" and chat_file.bytes > 0
    assert alice.files.retrieve(chat_file.id).filename == "chat.jsonl"
    assert sft_job.status == "queued" and sft_job.model == "tiny"
    job = wait_for(alice, sft_job.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"ft:tiny:adder:{job.id}" and job.trained_tokens > 0
    events = alice.fine_tuning.jobs.list_events(job.id, limit=100).data
    messages = [e.message for e in reversed(events)]  # newest first, as OpenAI lists them
    assert messages[0].startswith("Created fine-tuning job") and "successfully completed" in messages[-1]
    losses = [e for e in events if e.type == "metrics"]
    assert len(losses) == 4 and all("training loss=" in e.message for e in losses)
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


def test_dpo_job_with_openai_preference_file(alice, tmp_path):
    f = alice.files.create(file=write_jsonl(tmp_path / "prefs.jsonl", dpo_rows()).open("rb"), purpose="fine-tune")
    job = alice.fine_tuning.jobs.create(
        model="tiny", training_file=f.id, seed=1,
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "batch_size": 2}, "recipe": QUICK}})
    assert job.method.type == "dpo"
    job = wait_for(alice, job.id)
    assert job.status == "succeeded", job.error
    r = alice.chat.completions.create(model=job.fine_tuned_model, messages=[{"role": "user", "content": "Say a"}],
                                      temperature=0, max_tokens=3)
    assert r.choices[0].message.role == "assistant"


def test_bad_file_names_file_and_line(alice, tmp_path):
    rows = chat_rows(3)
    rows[1]["messages"][1]["role"] = "robot"
    with pytest.raises(openai.BadRequestError) as e:
        alice.files.create(file=write_jsonl(tmp_path / "bad.jsonl", rows).open("rb"), purpose="fine-tune")
    err = e.value.body
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"].startswith("bad.jsonl:2:") and "robot" in err["message"] and err["param"] == "file"
    assert "bad.jsonl" not in [f.filename for f in alice.files.list().data]


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


def test_cancel_running_job(alice, chat_file):
    long = {**QUICK, "train": {**QUICK["train"], "max_steps": 100000, "save_steps": 100000}}
    job = alice.fine_tuning.jobs.create(model="tiny", training_file=chat_file.id,
                                        method={"type": "supervised", "supervised": {"recipe": long}})
    deadline = time.monotonic() + 120
    while not any(e.type == "metrics" for e in alice.fine_tuning.jobs.list_events(job.id, limit=5).data):
        assert time.monotonic() < deadline and alice.fine_tuning.jobs.retrieve(job.id).status in ("queued", "running")
        time.sleep(0.3)
    alice.fine_tuning.jobs.cancel(job.id)
    job = wait_for(alice, job.id, timeout=60)
    assert job.status == "cancelled" and job.fine_tuned_model is None


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
    with pytest.raises(openai.BadRequestError):  # bob cannot train on alice's file
        bob.fine_tuning.jobs.create(model="tiny", training_file=chat_file.id)
    with pytest.raises(openai.NotFoundError):
        bob.chat.completions.create(model=job.fine_tuned_model, messages=[{"role": "user", "content": "hi"}])
    assert job.fine_tuned_model not in [m.id for m in bob.models.list().data]
    with pytest.raises(openai.AuthenticationError):
        client(bob.base_url, "ts-not-a-key").fine_tuning.jobs.list()
