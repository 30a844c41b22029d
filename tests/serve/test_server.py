"""`tunesmith serve` through the real openai client against a live server (tiny llama + 2 LoRA adapters)."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from serve._fixtures import API_KEY, LiveServer

PROMPT = [{"role": "user", "content": "Tell me a story."}]


def ask(client, model: str, **kw) -> str:
    r = client.chat.completions.create(model=model, messages=PROMPT, temperature=0, max_tokens=6, **kw)
    return r.choices[0].message.content


def test_models_list(client):
    ids = [m.id for m in client.models.list().data]
    assert ids[:3] == ["base-tiny", "ad1", "two"]  # base: its folder's run name; ad1: the run of adapter/


def test_chat_completion(client):
    r = client.chat.completions.create(model="ad1", messages=PROMPT, temperature=0, max_tokens=5)
    assert r.object == "chat.completion" and r.model == "ad1"
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 5 and r.usage.prompt_tokens > 0
    r2 = client.chat.completions.create(model="ad1", messages=PROMPT, temperature=0.8, top_p=0.9, seed=3, n=2,
                                        max_tokens=4, stop=["\n"])
    assert [c.index for c in r2.choices] == [0, 1]


def test_streaming_matches_and_ends_with_done(client, server):
    whole = ask(client, "two")
    chunks = list(client.chat.completions.create(model="two", messages=PROMPT, temperature=0, max_tokens=6,
                                                 stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    raw = httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                     json={"model": "two", "messages": PROMPT, "max_tokens": 3, "stream": True}, timeout=30)
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = [line for line in raw.text.split("\n\n") if line]
    assert len(events) >= 3 and events[-1] == "data: [DONE]"


def test_base_and_adapters_answer_differently(client):
    answers = {m: ask(client, m) for m in ("base-tiny", "ad1", "two")}
    assert len(set(answers.values())) == 3, answers
    assert ask(client, "ad1") == answers["ad1"]  # greedy: the same again, after switching adapters


def test_completions_endpoint(client):
    r = client.completions.create(model="base-tiny", prompt="Once upon a time", max_tokens=4, temperature=0)
    assert r.object == "text_completion" and r.usage.completion_tokens <= 4
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="base-tiny", prompt="Once upon a time", max_tokens=4, temperature=0, stream=True) if c.choices)
    assert streamed == r.choices[0].text


def test_errors_in_openai_shape(client, server):
    with pytest.raises(openai.NotFoundError) as e:
        ask(client, "nope")
    assert e.value.body["code"] == "model_not_found"
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="ad1", messages=PROMPT, max_tokens=100_000)
    assert e.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="ad1", messages=[{"role": "user", "content": "hi"}], temperature=5)
    r = httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                   content=b"{not json", timeout=10)
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_sixteen_concurrent_requests(client):
    models = ["base-tiny", "ad1", "two"]
    alone = {m: ask(client, m) for m in models}
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda i: (models[i % 3], ask(client, models[i % 3])), range(16)))
    assert len(got) == 16
    assert all(text == alone[m] for m, text in got)  # batched answers equal the lone ones


def test_disconnect_mid_stream_does_not_wedge(client, server):
    body = {"model": "base-tiny", "messages": PROMPT, "max_tokens": 200, "stream": True, "temperature": 0}
    with httpx.Client(timeout=30) as h, h.stream("POST", server.url + "/v1/chat/completions", json=body,
                                                 headers={"Authorization": f"Bearer {API_KEY}"}) as r:
        assert next(r.iter_lines()).startswith("data: ")  # then the client goes away mid-stream
    start = time.perf_counter()
    assert ask(client, "ad1")
    assert time.perf_counter() - start < 20
    deadline = time.monotonic() + 10  # the stream's end is recorded as 499 (client closed) and the job cancelled
    while 'status="499"' not in httpx.get(server.url + "/metrics").text:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_hot_load_adapter(client, server, tiny):
    r = httpx.post(server.url + "/v1/adapters", json={"name": "hot", "path": str(tiny["a2"])},
                   headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    assert r.status_code == 200, r.text
    assert "hot" in [m.id for m in client.models.list().data]
    assert ask(client, "hot") == ask(client, "two")  # the same weights under another name
    again = httpx.post(server.url + "/v1/adapters", json={"name": "hot", "path": str(tiny["a2"])},
                       headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    assert again.status_code == 409 and again.json()["error"]["code"] == "adapter_exists"


def test_health_and_metrics(client, server):
    ask(client, "ad1")
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    text = httpx.get(server.url + "/metrics").text
    for name in ("tunesmith_requests_total{", "tunesmith_tokens_generated_total ", "tunesmith_queue_depth ",
                 "tunesmith_request_latency_seconds_sum ", "tunesmith_request_latency_seconds_count "):
        assert name in text
    tokens = [line for line in text.splitlines() if line.startswith("tunesmith_tokens_generated_total ")]
    assert int(tokens[0].split()[1]) > 0


def test_full_queue_answers_503(tiny):
    from tunesmith.serve import Engine, create_app

    engine = Engine.load(tiny["base"], max_queue=1)  # never started: the first request stays queued
    with LiveServer(create_app(engine, manage_engine=False)) as live:
        client = openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0, timeout=30)
        first: list = []
        t = threading.Thread(target=lambda: first.append(_catch(lambda: ask(client, "base-tiny"))))
        t.start()
        deadline = time.monotonic() + 10
        while engine.queue.qsize() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(openai.InternalServerError) as e:
            ask(client, "base-tiny")
        assert e.value.status_code == 503 and e.value.body["code"] == "queue_full"
        engine.stop()  # the queued request gets a 503 too
        t.join(10)
    assert isinstance(first[0], openai.InternalServerError)


def _catch(fn):
    try:
        return fn()
    except Exception as e:  # noqa: BLE001
        return e


def test_engine_timeout_and_cancel(tiny):
    from tunesmith.serve import Engine, EngineError, Job

    engine = Engine.load(tiny["base"])
    ids = engine.render_chat(PROMPT)
    late = engine.submit(Job(model="base-tiny", prompt_ids=ids, max_tokens=4, temperature=0, timeout=0))
    gone = engine.submit(Job(model="base-tiny", prompt_ids=ids, max_tokens=4, temperature=0))
    gone.cancel()
    ok = engine.submit(Job(model="base-tiny", prompt_ids=ids, max_tokens=4, temperature=0))
    engine.start()
    try:
        with pytest.raises(EngineError) as e:
            late.wait(30)
        assert e.value.status == 504
        with pytest.raises(EngineError):
            gone.wait(30)
        assert ok.wait(30)["usage"]["completion_tokens"] <= 4
    finally:
        engine.stop()
