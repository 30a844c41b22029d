"""The job store on SQLite and on a real PostgreSQL (pgserver): migrations, keys, atomic claims,
one-transaction state changes, per-key visibility."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tunesmith.service.schema import ApiKey, Job, StoredFile
from tunesmith.service.store import Store, hash_key, new_id


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    pgserver = pytest.importorskip("pgserver")
    try:
        server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
        uri = server.get_uri()
    except Exception as e:  # noqa: BLE001 - no PostgreSQL here: skip, as the brief allows
        pytest.skip(f"pgserver cannot start PostgreSQL: {e}")
    yield uri.replace("postgresql://", "postgresql+psycopg://", 1)
    server.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    s = Store(tmp_path / "store", url)
    yield s
    if url:  # a fresh schema for the next test
        from sqlalchemy import text
        with s.engine.begin() as conn:
            conn.execute(text("DROP TABLE events, jobs, files, api_keys, alembic_version"))
    s.close()


def _job(owner: str, file_id: str, metadata: dict | None = None) -> Job:
    return Job(id=new_id("ftjob"), owner=owner, model="tiny", stage="sft", method={"type": "supervised"},
               training_file=file_id, seed=1, hyperparameters={}, recipe={"run": {"dir": "/x"}}, resources={},
               status="queued", created_at=int(time.time()), cancel_requested=False, attempts=0, resume=False,
               job_metadata=metadata)


def test_store_keys_files_jobs(store, tmp_path):
    kid, key = store.create_key("alice", max_running=1)
    other, _ = store.create_key("bob")
    assert store.key_owner(key).id == kid and store.key_owner("ts-wrong") is None
    assert key not in {k.key_hash for k in store.keys()} and hash_key(key) in {k.key_hash for k in store.keys()}
    f = store.add_file(StoredFile(id=new_id("file"), owner=kid, filename="a.jsonl", purpose="fine-tune", bytes=10,
                                  created_at=1, path=str(tmp_path / "a"), kind="conversational", rows=2))
    assert store.storage_used(kid) == 10 and store.storage_used(other) == 0
    assert store.get_file(other, f.id) is None and store.get_file(kid, f.id).filename == "a.jsonl"
    jobs = [store.add_job(_job(kid, f.id)) for _ in range(5)]
    assert store.get_job(other, jobs[0].id) is None
    page, more = store.list_jobs(kid, None, 2)
    assert [j.id for j in page] == [jobs[4].id, jobs[3].id] and more
    page, more = store.list_jobs(kid, page[-1].id, 10)
    assert [j.id for j in page] == [jobs[2].id, jobs[1].id, jobs[0].id] and not more

    # many schedulers racing for the same jobs: each job is claimed exactly once
    wins: list[tuple[str, str]] = []
    lock = threading.Lock()

    def race(me: str):
        for j in jobs:
            if store.claim(j.id, me):
                with lock:
                    wins.append((j.id, me))
    threads = [threading.Thread(target=race, args=(f"svc-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(j for j, _ in wins) == sorted(j.id for j in jobs)
    assert all(store.get_job(kid, j.id).attempts == 1 for j in jobs)

    # a state change and its event, together; a change that lost the race changes nothing
    assert store.transition(jobs[0].id, "succeeded", "done", expect=("running",), fine_tuned_model="ft:tiny::x")
    assert not store.transition(jobs[0].id, "failed", "late", expect=("running",))
    assert store.get_job(kid, jobs[0].id).status == "succeeded"
    assert [e.message for e in store.events(jobs[0].id)][-1] == "done"
    assert store.job_by_model(kid, "ft:tiny::x").id == jobs[0].id and store.job_by_model(other, "ft:tiny::x") is None
    # cancel: a queued job at once, a running one marked for the scheduler
    queued = store.add_job(_job(kid, f.id))
    assert store.request_cancel(kid, queued.id).status == "cancelled"
    assert store.request_cancel(kid, jobs[1].id).cancel_requested and store.request_cancel(other, jobs[1].id) is None
    assert store.delete_file(kid, f.id) and store.get_file(kid, f.id) is None


def test_migrations_are_idempotent(store):
    from tunesmith.service.store import migrate

    migrate(store.engine)  # already at head: nothing to do, nothing lost
    kid, key = store.create_key("x")
    migrate(store.engine)
    assert store.key_owner(key).id == kid


def test_metadata_filter_and_model_delete(store, tmp_path):
    kid, _ = store.create_key("alice")
    other, _ = store.create_key("bob")
    f = store.add_file(StoredFile(id=new_id("file"), owner=kid, filename="a.jsonl", purpose="fine-tune", bytes=10,
                                  created_at=1, path=str(tmp_path / "a"), kind="conversational", rows=2))
    odd = 'we"ird é.$[0]'  # quotes, dots and non-ASCII that SQLite JSON paths get wrong
    tagged = [store.add_job(_job(kid, f.id, {"team": "a", odd: str(i % 2)})) for i in range(5)]
    plain = store.add_job(_job(kid, f.id))
    assert store.get_job(kid, tagged[0].id).job_metadata == {"team": "a", odd: "0"}

    def ids(page: tuple[list[Job], bool]) -> list[str]:
        return [j.id for j in page[0]]

    assert ids(store.list_jobs(kid, None, 10, {odd: "0"})) == [tagged[4].id, tagged[2].id, tagged[0].id]
    page = store.list_jobs(kid, None, 2, {"team": "a", odd: "1"})
    assert ids(page) == [tagged[3].id, tagged[1].id] and not page[1]
    page = store.list_jobs(kid, None, 1, {odd: "0"})
    assert ids(page) == [tagged[4].id] and page[1]
    page = store.list_jobs(kid, tagged[4].id, 1, {odd: "0"})
    assert ids(page) == [tagged[2].id] and page[1]
    assert ids(store.list_jobs(kid, None, 10, null_metadata=True)) == [plain.id]
    assert store.list_jobs(other, None, 10, {"team": "a"}) == ([], False)

    # a succeeded job's model: deleted once, by its owner only; the job stays
    job = tagged[0]
    model_dir = store.job_dir(job.id) / "run" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "adapter_model.safetensors").write_bytes(b"x")
    store.set_job(job.id, status="succeeded", fine_tuned_model="ft:tiny::a", model_path=str(model_dir))
    assert [j.id for j in store.fine_tuned_models(kid)] == [job.id]
    assert store.delete_model(other, "ft:tiny::a") is None and store.job_by_model(kid, "ft:tiny::a") is not None
    deleted = store.delete_model(kid, "ft:tiny::a")
    assert deleted.id == job.id and deleted.model_deleted_at and store.delete_model(kid, "ft:tiny::a") is None
    assert store.job_by_model(kid, "ft:tiny::a") is None and store.fine_tuned_models(kid) == []
    assert store.get_job(kid, job.id).fine_tuned_model == "ft:tiny::a"
    assert store.remove_model_files(deleted) and not model_dir.exists() and model_dir.parent.is_dir()
    # only a real folder inside the job's own folder is removed
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    link = store.job_dir(job.id) / "link"
    link.symlink_to(outside)
    for path in (outside, link, store.job_dir(job.id), store.job_dir(job.id) / "run" / ".." / ".." / tagged[1].id):
        store.job_dir(tagged[1].id).mkdir(exist_ok=True)
        job.model_path = str(path)
        assert not store.remove_model_files(job), path
    assert outside.is_dir() and store.job_dir(tagged[1].id).is_dir()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_first_schema_database_upgrades_with_its_jobs(backend, request, tmp_path):
    """A database at migration 0001 (before metadata and deleted models) upgrades when the store
    opens, and keeps its keys and jobs."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, insert, inspect, text

    from tunesmith.service import store as store_module

    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else f"sqlite:///{tmp_path}/old.db"
    engine = create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(store_module.__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    assert "metadata" not in {c["name"] for c in inspect(engine).get_columns("jobs")}  # the 0001 schema
    old = _job("key-1", "file-1")
    row = {c: getattr(old, c) for c in ("id", "owner", "model", "stage", "training_file", "seed", "status",
                                        "created_at", "cancel_requested", "attempts", "resume")}
    with engine.begin() as conn:
        conn.execute(insert(ApiKey.__table__).values(id="key-1", name="old", key_hash="h", created_at=1,
                                                     revoked=False))
        conn.execute(text("INSERT INTO jobs (id, owner, model, stage, method, training_file, seed, hyperparameters, "
                          "recipe, resources, status, created_at, cancel_requested, attempts, resume) VALUES (:id, "
                          ":owner, :model, :stage, '{}', :training_file, :seed, '{}', '{}', '{}', :status, "
                          ":created_at, :cancel_requested, :attempts, :resume)"), row)  # 0001's columns only
    engine.dispose()
    store = Store(tmp_path / "store", url)
    try:
        assert {"metadata", "model_deleted_at"} <= {c["name"] for c in inspect(store.engine).get_columns("jobs")}
        job = store.get_job("key-1", old.id)
        assert job.status == "queued" and job.job_metadata is None and job.model_deleted_at is None
        assert [j.id for j in store.list_jobs("key-1", None, 10, null_metadata=True)[0]] == [old.id]
        new = store.add_job(_job("key-1", "file-1", {"a": "b"}))
        assert [j.id for j in store.list_jobs("key-1", None, 10, {"a": "b"})[0]] == [new.id]
    finally:
        if backend == "postgresql":
            with store.engine.begin() as conn:
                conn.execute(text("DROP TABLE events, jobs, files, api_keys, alembic_version"))
        store.close()
