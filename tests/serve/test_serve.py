"""``lstm-pipeline serve`` through the real ``openai`` client, against a server on a free loopback
port (a real uvicorn process started by the CLI), compared with ``lstm-pipeline generate``."""
import asyncio
import json
import socket
import time

import httpx
import pytest

openai = pytest.importorskip("openai", reason="the openai client is a test dependency (pip install 'lstm-pipeline[dev]')")
pytest.importorskip("fastapi", reason="serve needs its extra (pip install 'lstm-pipeline[serve]')")

from helpers import ServeProcess, run_cli  # noqa: E402

KEY = "test-key-123"
PROMPT = "ROMEO:"


@pytest.fixture(scope="module")
def server(tiny_run):
    with ServeProcess(f"run={tiny_run}", "model_name=tiny", "max_tokens=5000", "max_n=4", "max_prompt_tokens=64",
                      "max_streams=80", env={"LSTM_PIPELINE_API_KEY": KEY, "OMP_NUM_THREADS": "1"}) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def health(server) -> dict:
    return httpx.get(server.url + "/health", timeout=10).json()


def generate(run, *overrides) -> str:
    """The text ``lstm-pipeline generate`` prints after the prompt (its streamed output, minus the
    prompt and the final newline)."""
    out = run_cli("generate", f"run={run}", f"prompt={PROMPT}", *overrides).stdout
    assert out.startswith(PROMPT) and out.endswith("\n"), out
    return out[len(PROMPT):-1]


def test_models_health_and_page(server, client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert health(server)["status"] == "ok"
    page = httpx.get(server.url + "/", timeout=10)
    assert page.status_code == 200 and "<textarea" in page.text and "/v1/completions" in page.text


@pytest.mark.parametrize("decoding, request_settings", [
    (None, {}),                                         # the server's default decoding: the model's own, as generate's
    ("nucleus", {"temperature": 1.0, "top_p": 0.9}),    # OpenAI's fields give the same strategy
    ("nucleus", {"extra_body": {"decoding": "nucleus"}}),
    ("greedy", {"temperature": 0}),
])
def test_seeded_text_equals_generate(tiny_run, client, decoding, request_settings):
    expected = generate(tiny_run, "max_new_tokens=40", "seed=11", *([f"decoding={decoding}"] if decoding else []))
    got = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=40, seed=11, **request_settings)
    assert got.choices[0].text == expected
    assert got.choices[0].finish_reason == "length"
    assert got.usage.completion_tokens == 40 and got.usage.prompt_tokens == len(PROMPT)
    streamed = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=40, seed=11, stream=True,
                                         **request_settings)
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "length"


def test_project_decoding_options(tiny_run, client):
    """top_k, min_p and repetition_penalty reach the project's processors: same text as generate."""
    expected = generate(tiny_run, "max_new_tokens=30", "seed=5", "decoding=top_k", "decoding.top_k=5",
                        "decoding.min_p=0.05", "decoding.repetition_penalty=1.3")
    got = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=30, seed=5, temperature=1.0,
                                    extra_body={"top_k": 5, "min_p": 0.05, "repetition_penalty": 1.3})
    assert got.choices[0].text == expected


def test_n_and_logprobs_equal_generate_prompts_file(tiny_run, client, tmp_path):
    """n=3 rows of one prompt: the rows ``generate prompts_file= num_samples=3`` produces with that
    seed; the summed logprobs are its scores."""
    (tmp_path / "p.txt").write_text(PROMPT + "\n")
    out = tmp_path / "out.jsonl"
    run_cli("generate", f"run={tiny_run}", f"prompts_file={tmp_path / 'p.txt'}", f"output_file={out}",
            "num_samples=3", "batch_size=3", "max_new_tokens=25", "seed=3")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    got = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=25, seed=3, n=3, logprobs=2)
    assert [c.index for c in got.choices] == [0, 1, 2]
    assert [c.text for c in got.choices] == [r["text"] for r in records]
    for c, r in zip(got.choices, records):
        lp = c.logprobs
        assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 25
        assert all(len(t) == 2 for t in lp.top_logprobs) and all(x <= 0 for x in lp.token_logprobs)
        assert sum(lp.token_logprobs) == pytest.approx(r["score"], abs=1e-3)
        assert "".join(lp.tokens) == c.text and lp.text_offset[0] == 0


def test_stop_cuts_the_text_where_generate_stops(tiny_run, client):
    plain = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=60, seed=9).choices[0].text
    stop = next(ch for ch in plain[3:] if ch.isalpha())
    kept = generate(tiny_run, "max_new_tokens=60", "seed=9", f"stop_strings=[{stop}]")
    assert kept.endswith(stop)  # generate keeps the stop string; OpenAI's API leaves it out
    got = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=60, seed=9, stop=[stop, "zzzz"])
    assert got.choices[0].text == kept[: -len(stop)]
    assert got.choices[0].finish_reason == "stop"
    streamed = list(client.completions.create(model="tiny", prompt=PROMPT, max_tokens=60, seed=9, stop=stop,
                                              stream=True))
    assert "".join(c.choices[0].text for c in streamed) == kept[: -len(stop)]
    assert streamed[-1].choices[0].finish_reason == "stop"


def test_list_prompt_and_token_ids(client):
    got = client.completions.create(model="tiny", prompt=["ROMEO:", "JULIET:"], max_tokens=5, n=2, seed=1)
    assert [c.index for c in got.choices] == [0, 1, 2, 3]
    ids = client.completions.create(model="tiny", prompt=[3, 4, 5], max_tokens=5, seed=1)
    assert ids.usage.prompt_tokens == 3 and ids.choices[0].finish_reason == "length"


@pytest.mark.parametrize("kwargs, status, needle", [
    ({"max_tokens": 10**6}, 400, "max_tokens must be between 1 and 5000"),
    ({"n": 9}, 400, "n must be between 1 and 4"),
    ({"logprobs": 9}, 400, "logprobs must be between 0 and 5"),
    ({"prompt": "a" * 100}, 400, "max_prompt_tokens=64"),
    ({"top_p": 1.5}, 400, "top_p must be in (0, 1]"),
    ({"extra_body": {"temperatur": 0.5}}, 400, "unknown field 'temperatur'"),
    ({"extra_body": {"decoding": "beam"}}, 400, "cannot run in a continuous batch"),
    ({"extra_body": {"decoding": "no_such"}}, 400, "no_such"),
    ({"prompt": "ROMEO: \u6f22"}, 400, "never saw in training"),
    ({"model": "/etc/passwd"}, 404, "does not exist here"),
])
def test_errors_are_openai_shaped(client, kwargs, status, needle):
    args = {"model": "tiny", "prompt": PROMPT, "max_tokens": 5, **kwargs}
    with pytest.raises(openai.APIStatusError) as info:
        client.completions.create(**args)
    err = info.value
    assert err.status_code == status
    assert needle in err.message, err.message
    body = err.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_the_engine_process_spins_briefly_for_openmp(server):
    """The engine process (the web process's spawned child) starts with libgomp's short spin
    (worker.OPENMP_SPIN), so that its waiting OpenMP worker leaves the CPU to the web process and
    the clients."""
    from pathlib import Path

    from lstm_pipeline.serve.worker import OPENMP_SPIN

    kids = [int(c) for t in Path(f"/proc/{server.proc.pid}/task").iterdir() for c in (t / "children").read_text().split()]
    kids = [k for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]  # not the resource tracker
    assert len(kids) == 1, kids
    env = dict(kv.split("=", 1) for kv in Path(f"/proc/{kids[0]}/environ").read_text().split("\0") if "=" in kv)
    assert {k: env.get(k) for k in OPENMP_SPIN} == OPENMP_SPIN


@pytest.mark.parametrize("user", [{}, {"GOMP_SPINCOUNT": "50"}, {"OMP_WAIT_POLICY": "passive"}])
def test_the_short_spin_is_only_for_the_child_and_yields_to_the_users_choice(user, monkeypatch):
    """Inside ``openmp_spin_env`` a started process sees the short spin unless the user set
    GOMP_SPINCOUNT or OMP_WAIT_POLICY; the web process's environment is as before afterwards."""
    import os

    from lstm_pipeline.serve.worker import OPENMP_SPIN, openmp_spin_env

    for k in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(k, raising=False)
    for k, v in user.items():
        monkeypatch.setenv(k, v)
    before = dict(os.environ)
    with openmp_spin_env():
        inside = dict(os.environ)
    assert dict(os.environ) == before
    assert inside == ({**before, **OPENMP_SPIN} if not user else before)


def test_api_key_required(server):
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="Bearer"):
        bad.completions.create(model="tiny", prompt=PROMPT, max_tokens=3)
    assert httpx.get(server.url + "/metrics", timeout=10).status_code == 401
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200  # health and the page stay open


def test_metrics(server, client):
    client.completions.create(model="tiny", prompt=PROMPT, max_tokens=4)
    text = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).text
    for name in ("lstm_pipeline_requests_total", "lstm_pipeline_generated_tokens_total", "lstm_pipeline_batch_occupancy",
                 "lstm_pipeline_time_to_first_token_seconds_bucket", "lstm_pipeline_request_seconds_count",
                 "lstm_pipeline_step_seconds_count"):
        assert name in text
    assert 'path="/v1/completions",status="200"' in text


def _wait_idle(server, seconds=10.0) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        h = health(server)
        if h["active_rows"] == 0 and h["queued_rows"] == 0:
            return h
        time.sleep(0.02)
    raise AssertionError(f"rows still active after {seconds} s: {h}")


def test_disconnect_frees_the_row(server):
    before = _wait_idle(server)["tokens"]
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 5000, "stream": True}
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", server.url + "/v1/completions", json=body,
                         headers={"Authorization": f"Bearer {KEY}"}) as r:
            assert r.status_code == 200
            next(r.iter_lines())
    after = _wait_idle(server, 5.0)["tokens"]
    assert after - before < 5000  # it left the batch before its budget ran out


def test_disconnect_frees_the_row_of_a_plain_request(server):
    """vLLM #9428: a non-streamed request went on generating for a client that had gone (the check
    ran only after a second without tokens, which never comes while tokens flow). Its rows must
    leave the batch as soon as the connection closes."""
    before = _wait_idle(server)["tokens"]
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 5000}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v1/completions", json=body, headers={"Authorization": f"Bearer {KEY}"},
                   timeout=httpx.Timeout(10, read=0.3))
    gone = time.monotonic()
    after = _wait_idle(server, 5.0)
    assert time.monotonic() - gone < 0.5, after
    assert after["tokens"] - before < 5000


def test_host_header_is_checked(server):
    """serve binds 127.0.0.1 here: another name in the Host header (DNS rebinding) is refused."""
    assert httpx.get(server.url + "/health", headers={"Host": f"localhost:{server.port}"}, timeout=10).status_code == 200
    assert httpx.get(server.url + "/health", headers={"Host": "rebind.example"}, timeout=10).status_code == 421


def test_slow_client_does_not_stall_others(server, client):
    """A client that sends a streaming request and never reads it: the others finish regardless."""
    body = json.dumps({"model": "tiny", "prompt": PROMPT, "max_tokens": 5000, "stream": True}).encode()
    sock = socket.create_connection(("127.0.0.1", server.port))
    try:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        t0 = time.monotonic()
        for _ in range(3):
            assert client.completions.create(model="tiny", prompt=PROMPT, max_tokens=30).usage.completion_tokens == 30
        assert time.monotonic() - t0 < 20
    finally:
        sock.close()
    _wait_idle(server, 10.0)


def test_seeds_hold_inside_a_shared_batch(server, client):
    """8 seeded streams at once, each with its own settings: each gets the text it gets alone."""
    settings = [dict(seed=s, temperature=0.7 + 0.1 * (s % 3), top_p=1.0 if s % 2 else 0.9) for s in range(8)]
    alone = [client.completions.create(model="tiny", prompt=PROMPT, max_tokens=30, **kw).choices[0].text
             for kw in settings]

    async def together():
        aclient = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)
        results = await asyncio.gather(*[aclient.completions.create(model="tiny", prompt=PROMPT, max_tokens=30, **kw)
                                         for kw in settings])
        await aclient.close()
        return [r.choices[0].text for r in results]

    assert asyncio.run(together()) == alone


def test_64_concurrent_streaming_clients(server):
    """64 streaming clients at once, bounded in time: every one gets all its tokens, and the server
    stepped them together (far fewer steps than tokens)."""
    start = _wait_idle(server)

    async def one(aclient, i):
        stream = await aclient.completions.create(model="tiny", prompt=PROMPT, max_tokens=200, seed=i, stream=True)
        text, finish = "", None
        async for chunk in stream:
            text += chunk.choices[0].text
            finish = chunk.choices[0].finish_reason or finish
        return text, finish

    async def main():
        aclient = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)
        try:
            return await asyncio.wait_for(asyncio.gather(*[one(aclient, i) for i in range(64)]), timeout=120)
        finally:
            await aclient.close()

    results = asyncio.run(main())
    assert len(results) == 64 and all(f == "length" for _, f in results)
    end = _wait_idle(server)
    tokens, steps = end["tokens"] - start["tokens"], end["steps"] - start["steps"]
    assert tokens == 64 * 200
    assert steps < tokens / 4 and end["peak_rows"] >= 16, (steps, tokens, end)  # rows were stepped together


def test_too_many_streams_is_429(tiny_run):
    """The concurrent-stream limit, in process with the real model and an engine that is not running
    (so admitted requests stay in line)."""
    from lstm_pipeline.artifacts.model_dir import load_pretrained
    from lstm_pipeline.serve.app import APIError, CompletionRequest, Server

    model, tok, config = load_pretrained(tiny_run)
    server = Server(model, tok, config, model_name="tiny", decoding={"name": "sample"}, max_batch=8, max_streams=10)
    for _ in range(2):
        group, _ = server.group_for(CompletionRequest(prompt="a", n=4), lambda g, e: None)
        server.engine.submit(group)
    with pytest.raises(APIError) as info:
        server.group_for(CompletionRequest(prompt="a", n=4), lambda g, e: None)
    assert info.value.status == 429 and info.value.type == "rate_limit_error"


def test_bad_server_settings_are_one_line(tiny_run):
    proc = run_cli("serve", f"run={tiny_run}", "decoding=beam", "port=1", check=False)
    assert proc.returncode == 1
    assert "cannot run in a continuous batch" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("serve", f"run={tiny_run}", "max_batch=0", "port=1", check=False)
    assert proc.returncode == 1 and "max_batch must be a positive int" in proc.stderr
    proc = run_cli("serve", f"run={tiny_run}", "stream_interval_ms=-5", "port=1", check=False)
    assert proc.returncode == 1 and "stream_interval_ms must be" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("serve", f"run={tiny_run}", "port=1", check=False, env={"LSTM_PIPELINE_SERVE_ENGINE_THREAD": "side"})
    assert proc.returncode == 1 and "LSTM_PIPELINE_SERVE_ENGINE_THREAD must be 'main'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_stream_interval_joins_tokens_per_event(tiny_run):
    """stream_interval_ms: the tokens chosen between two events of a stream go out in one event
    (text joined per choice, logprobs lists); the text and usage are the same."""
    expected = generate(tiny_run, "max_new_tokens=40", "seed=11", "decoding=nucleus")
    with ServeProcess(f"run={tiny_run}", "model_name=tiny", "stream_interval_ms=150",
                      env={"OMP_NUM_THREADS": "1"}) as s:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="none", max_retries=0, timeout=60)
        chunks = list(client.completions.create(model="tiny", prompt=PROMPT, max_tokens=40, seed=11, stream=True,
                                                temperature=1.0, top_p=0.9, stream_options={"include_usage": True}))
        plain = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=25, seed=3, n=2, logprobs=1)
        rows = list(client.completions.create(model="tiny", prompt=PROMPT, max_tokens=25, seed=3, n=2, logprobs=1,
                                              stream=True))
    events = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].text for c in events) == expected
    assert chunks[-1].usage.completion_tokens == 40 and events[-1].choices[0].finish_reason == "length"
    assert 1 < len(events) < 10  # the first event at once, the rest joined
    for want in plain.choices:
        mine = [c for chunk in rows for c in chunk.choices if c.index == want.index]
        assert "".join(c.text for c in mine) == want.text
        tokens = [t for c in mine for t in c.logprobs.tokens]
        assert tokens == want.logprobs.tokens and "".join(tokens) == want.text
        assert [x for c in mine for x in c.logprobs.token_logprobs] == pytest.approx(want.logprobs.token_logprobs)
        assert [o for c in mine for o in c.logprobs.text_offset] == want.logprobs.text_offset


@pytest.mark.parametrize("overrides, env", [
    (["engine_process=false"], {}),                           # the loop in a thread of the web process
    ([], {"LSTM_PIPELINE_SERVE_ENGINE_THREAD": "own"}),       # in a thread of its own in the engine process
], ids=["web_process_thread", "engine_process_own_thread"])
def test_engine_in_a_thread_gives_the_same_text(tiny_run, overrides, env):
    """The batching loop elsewhere than the engine process's main thread: the same text."""
    expected = generate(tiny_run, "max_new_tokens=30", "seed=4", "decoding=nucleus")
    with ServeProcess(f"run={tiny_run}", "model_name=tiny", *overrides, env={"OMP_NUM_THREADS": "1", **env}) as s:
        got = httpx.post(s.url + "/v1/completions", timeout=60, json={
            "prompt": PROMPT, "max_tokens": 30, "seed": 4, "decoding": "nucleus"}).json()
    assert got["choices"][0]["text"] == expected
