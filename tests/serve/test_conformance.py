"""OpenAI conformance of ``lstm-pipeline serve``, each case a peer project's bug report replayed
(vLLM #8625, TGI #687, exo #1691, ...), in process: a :class:`Server` over the tiny run with its
engine in a thread, driven through Starlette's TestClient."""
import pytest

pytest.importorskip("fastapi", reason="serve needs its extra (pip install 'lstm-pipeline[serve]')")

from starlette.testclient import TestClient  # noqa: E402

from lstm_pipeline.artifacts.model_dir import load_pretrained  # noqa: E402
from lstm_pipeline.serve.app import Server  # noqa: E402
from lstm_pipeline.tokenization.base import TextTokenizer  # noqa: E402
from lstm_pipeline.tokenization.byte import ByteTokenizer  # noqa: E402


def make_client(tiny_run, **kwargs):
    model, tokenizer, config = load_pretrained(tiny_run)
    server = Server(model, tokenizer, config, model_name="tiny", **kwargs)
    return TestClient(server.app(), base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def greedy(tiny_run):
    with make_client(tiny_run, decoding={"name": "greedy"}) as client:
        yield client


def complete(client, **body):
    r = client.post("/v1/completions", json={"model": "tiny", "prompt": "ROMEO:", "max_tokens": 5, **body})
    assert r.status_code == 200, r.text
    return r.json()


def test_prompt_tokens_count_each_prompt_once(greedy):
    """vLLM #8625: a 6-token prompt with n=3 reported 18 prompt tokens."""
    out = complete(greedy, n=3)
    assert out["usage"]["prompt_tokens"] == 6
    assert out["usage"]["completion_tokens"] == 15 and out["usage"]["total_tokens"] == 21
    two = complete(greedy, prompt=["ROMEO:", "JULIET:"], n=2)
    assert two["usage"]["prompt_tokens"] == 6 + 7


def test_neutral_sampling_values_on_a_greedy_server(greedy):
    """TGI #687: OpenAI's neutral values were refused (400) on a greedy server. top_p=1 and top_k=0
    are filters that are off; temperature 1 is OpenAI's plain sampling (seeded: as decoding=sample)."""
    plain = complete(greedy, max_tokens=20)["choices"][0]["text"]
    assert complete(greedy, max_tokens=20, top_p=1.0, top_k=0)["choices"][0]["text"] == plain
    sampled = complete(greedy, max_tokens=20, temperature=1.0, top_p=1.0, top_k=0, seed=4)["choices"][0]["text"]
    assert sampled == complete(greedy, max_tokens=20, decoding="sample", seed=4)["choices"][0]["text"]


def test_echo_returns_the_prompt_and_its_logprobs(greedy):
    """OpenAI's legacy echo: the prompt's tokens come first, the first one's logprob (and
    top_logprobs) null; max_tokens=0 scores the prompt alone."""
    out = complete(greedy, echo=True, logprobs=1, max_tokens=0)["choices"][0]
    lp = out["logprobs"]
    assert out["text"] == "ROMEO:" and out["finish_reason"] == "length"
    assert lp["tokens"] == list("ROMEO:") and lp["text_offset"] == [0, 1, 2, 3, 4, 5]
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert all(x < 0 for x in lp["token_logprobs"][1:]) and all(len(t) == 1 for t in lp["top_logprobs"][1:])
    more = complete(greedy, echo=True, logprobs=1, max_tokens=3)["choices"][0]
    assert more["text"].startswith("ROMEO:") and len(more["logprobs"]["tokens"]) == 6 + 3
    assert more["logprobs"]["token_logprobs"][0] is None
    assert more["logprobs"]["token_logprobs"][1:6] == pytest.approx(lp["token_logprobs"][1:6], abs=1e-5)
    r = greedy.post("/v1/completions", json={"prompt": "ROMEO:", "max_tokens": 0})
    assert r.status_code == 400 and "echo=true" in r.json()["error"]["message"]


def test_tokenize_and_detokenize(greedy):
    ids = greedy.post("/tokenize", json={"prompt": "ROMEO:"}).json()
    assert ids["count"] == 6 and len(ids["tokens"]) == 6
    assert greedy.post("/detokenize", json={"tokens": ids["tokens"]}).json() == {"prompt": "ROMEO:"}
    info = greedy.get("/tokenizer_info").json()
    assert info["bos_token"] == "\n"


def test_byte_level_tokens_are_named_in_openai_bytes_form():
    """exo #1691: a partial UTF-8 token decodes to '\\ufffd' alone, so tokens no longer joined to the
    text and top_logprobs entries collided. OpenAI names such tokens 'bytes:\\xNN'."""
    from lstm_pipeline.serve.sampling import token_text

    tk = TextTokenizer(ByteTokenizer().train())
    e_acute = "é".encode()  # two bytes, each incomplete alone
    names = [token_text(tk, b) for b in e_acute]
    assert names == ["bytes:\\xc3", "bytes:\\xa9"]
    assert token_text(tk, ord("a")) == "a"
    assert len({token_text(tk, b) for b in range(256)}) == 256  # no two tokens share a name


def test_host_header_is_checked_on_a_loopback_server(tiny_run):
    """DNS rebinding: a page on evil.example whose name resolves to 127.0.0.1 reaches a loopback
    server with ``Host: evil.example``; only the loopback names are answered."""
    with make_client(tiny_run, decoding={"name": "greedy"}, host="127.0.0.1") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health", headers={"Host": "localhost:8000"}).status_code == 200
        assert client.get("/health", headers={"Host": "[::1]:8000"}).status_code == 200
        bad = client.post("/v1/completions", json={"prompt": "ROMEO:"}, headers={"Host": "evil.example:8000"})
        assert bad.status_code == 421 and bad.json()["error"]["code"] == "invalid_host"


def test_chunked_body_over_the_limit_is_413(greedy):
    """The size limit read only Content-Length; a chunked body had none and was read whole."""
    def chunks():
        for _ in range(40):
            yield b"x" * 50_000  # 2 MB > max_body_bytes (1 MB)

    r = greedy.post("/v1/completions", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["error"]["message"]
    small = b'{"prompt": "ROMEO:", "max_tokens": 2}'
    ok = greedy.post("/v1/completions", content=iter([small[:10], small[10:]]), headers={"Content-Type": "application/json"})
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 2


def test_cors_is_off_by_default_and_follows_cors_origins(tiny_run, greedy):
    preflight = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    assert "access-control-allow-origin" not in greedy.options("/v1/completions", headers=preflight).headers
    with make_client(tiny_run, decoding={"name": "greedy"}, cors_origins=["http://localhost:3000"],
                     api_key="k") as client:
        r = client.options("/v1/completions", headers=preflight)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://localhost:3000"
        other = client.options("/v1/completions", headers={**preflight, "Origin": "http://evil.example"})
        assert other.headers.get("access-control-allow-origin") != "http://evil.example"


def test_model_by_id_and_unknown_paths(greedy):
    assert greedy.get("/v1/models/tiny").json() == {**greedy.get("/v1/models").json()["data"][0]}
    missing = greedy.get("/v1/models/gpt-4")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    unknown = greedy.post("/v1/embeddings", json={"input": "x"})
    message = unknown.json()["error"]["message"]
    assert unknown.status_code == 404 and "POST /v1/completions" in message and "GET /v1/models" in message


def test_logit_bias(greedy):
    """OpenAI's logit_bias: +100 forces a token, -100 bans one; bad keys or values are a 400."""
    x = greedy.post("/tokenize", json={"prompt": "x"}).json()["tokens"][0]
    forced = complete(greedy, max_tokens=8, logit_bias={str(x): 100})["choices"][0]["text"]
    assert forced == "x" * 8
    plain = complete(greedy, max_tokens=8)["choices"][0]["text"]
    first = greedy.post("/tokenize", json={"prompt": plain[0]}).json()["tokens"][0]
    banned = complete(greedy, max_tokens=8, logit_bias={str(first): -100})["choices"][0]["text"]
    assert plain[0] not in banned
    for bias in ({"x": 1}, {str(10**6): 1}, {str(x): 101}):
        r = greedy.post("/v1/completions", json={"prompt": "ROMEO:", "logit_bias": bias})
        assert r.status_code == 400 and r.json()["error"]["param"] == "logit_bias"
