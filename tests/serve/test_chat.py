"""Chat completions: messages rendered with the model's chat template (the same text transformers'
``apply_chat_template`` renders from the same directory), then answered as a completion, through
the real ``openai`` client against a real server process."""
import json
import shutil

import httpx
import pytest

openai = pytest.importorskip("openai", reason="the openai client is a test dependency (pip install 'lstm-pipeline[dev]')")
pytest.importorskip("fastapi", reason="serve needs its extra (pip install 'lstm-pipeline[serve]')")

from helpers import ServeProcess  # noqa: E402
from lstm_pipeline.artifacts.model_dir import DEFAULT_CHAT_TEMPLATE  # noqa: E402
from lstm_pipeline.serve.chat import ChatError, ChatTemplate  # noqa: E402

#: the template docs/serve.md gives for Tiny Shakespeare (user -> ROMEO, assistant -> JULIET), as typed
SHAKESPEARE = ('{% for m in messages %}{{ {"system": "CHORUS", "user": "ROMEO", "assistant": "JULIET"}[m.role] '
               '~ ":\\n" ~ m.content ~ "\\n\\n" }}{% endfor %}{% if add_generation_prompt %}{{ "JULIET:\\n" }}{% endif %}')

CONVERSATIONS = [
    [{"role": "user", "content": "Hello there"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What light?"}],
    [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"},
     {"role": "user", "content": "three\nand four"}, {"role": "assistant", "content": "five"},
     {"role": "user", "content": "six"}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "  spaces  and {{ braces }} {% raw %}"}],
]

MESSAGES = [{"role": "user", "content": "ROMEO: what light"}]


def with_template(src, dst, template):
    """A copy of model directory ``src`` at ``dst`` recording ``template`` (None: none at all)."""
    shutil.copytree(src, dst)
    path = dst / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.pop("chat_template", None)
    if template is not None:
        config["chat_template"] = template
    path.write_text(json.dumps(config))
    return dst


# -- the template ------------------------------------------------------------------------------
def test_export_records_the_default_template(tiny_run):
    d = tiny_run / "model"
    assert json.loads((d / "tokenizer_config.json").read_text())["chat_template"] == DEFAULT_CHAT_TEMPLATE
    assert ChatTemplate.of_model_dir(d).render(CONVERSATIONS[2]) == (
        "USER:\none\n\nASSISTANT:\ntwo\n\nUSER:\nthree\nand four\n\nASSISTANT:\nfive\n\nUSER:\nsix\n\nASSISTANT:\n")


@pytest.mark.parametrize("template", [None, SHAKESPEARE, "{{ bos_token }}{% for m in messages %}{{ m['content'] + unk_token }}"
                                      "{% endfor %}{% if add_generation_prompt %}>{% endif %}"])
@pytest.mark.parametrize("generation_prompt", [True, False])
def test_rendering_equals_transformers(tiny_run, tmp_path, template, generation_prompt):
    """Our rendering == ``AutoTokenizer.from_pretrained(d).apply_chat_template(..., tokenize=False)``
    on the same directory, for each conversation, exactly (the same characters)."""
    transformers = pytest.importorskip("transformers")
    d = tiny_run / "model"
    if template is not None:
        d = with_template(d, tmp_path / "custom", template)
    tok = transformers.AutoTokenizer.from_pretrained(d)
    ours = ChatTemplate.of_model_dir(d)
    assert ours.source == "model"
    for messages in CONVERSATIONS:
        theirs = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        assert ours.render(messages, add_generation_prompt=generation_prompt) == theirs


def test_shakespeare_template_maps_roles_to_speakers():
    t = ChatTemplate(SHAKESPEARE, "model")
    assert t.render(CONVERSATIONS[1]) == "CHORUS:\nBe brief.\n\nROMEO:\nWhat light?\n\nJULIET:\n"


@pytest.mark.parametrize("messages, needle", [
    ([], "non-empty list"),
    ([{"role": "wizard", "content": "x"}], "messages[0].role is 'wizard'"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}], "only text parts"),
    ([{"role": "user", "content": 3}], "must be a string"),
])
def test_bad_messages_are_one_line(messages, needle):
    with pytest.raises(ChatError, match=None) as info:
        ChatTemplate().render(messages)
    assert needle in str(info.value)


def test_text_parts_are_joined():
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert ChatTemplate().render([{"role": "user", "content": parts}]) == "USER:\nab\n\nASSISTANT:\n"


# -- the server ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tiny_run):
    """The tiny run's model, which records the default template (so the header says ``model``)."""
    with ServeProcess(f"run={tiny_run}", "model_name=tiny", "max_n=4", env={"OMP_NUM_THREADS": "1"}) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=60)


def test_chat_is_the_completion_of_the_rendered_prompt(tiny_run, server, client):
    """Plain and streamed chat give the text the completions endpoint gives for the prompt the
    template renders, with the same seed: one generation path."""
    prompt = ChatTemplate.of_model_dir(tiny_run / "model").render(MESSAGES)
    assert prompt == "USER:\nROMEO: what light\n\nASSISTANT:\n"
    expected = client.completions.create(model="tiny", prompt=prompt, max_tokens=30, seed=4).choices[0].text
    got = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=30, seed=4)
    assert got.object == "chat.completion" and got.id.startswith("chatcmpl-")
    choice = got.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == expected
    assert choice.finish_reason == "length" and choice.logprobs is None
    assert got.usage.completion_tokens == 30 and got.usage.prompt_tokens == len(prompt)
    assert got.usage.total_tokens == 30 + len(prompt)
    chunks = list(client.chat.completions.create(model="tiny", messages=MESSAGES, max_completion_tokens=30,
                                                 seed=4, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:-1])
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == expected
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 30
    assert all(c.usage is None for c in chunks[:-1])


def test_seed_n_and_stop(client):
    args = dict(model="tiny", messages=MESSAGES, max_tokens=40, seed=8, temperature=1.0)
    a = client.chat.completions.create(n=3, **args)
    b = client.chat.completions.create(n=3, **args)
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert len({c.message.content for c in a.choices}) > 1  # n rows, each its own sample
    streamed = list(client.chat.completions.create(n=3, stream=True, **args))
    for i in range(3):
        text = "".join(c.delta.content or "" for ch in streamed for c in ch.choices if c.index == i)
        assert text == a.choices[i].message.content
        roles = [c.delta.role for ch in streamed for c in ch.choices if c.index == i and c.delta.role]
        assert roles == ["assistant"]
    plain = client.chat.completions.create(**args).choices[0].message.content
    at = next(i for i in range(3, len(plain)) if plain[i].isalpha() and plain[i] not in plain[:i])
    cut = client.chat.completions.create(stop=[plain[at], "zzzz"], **args).choices[0]
    assert cut.message.content == plain[:at]  # OpenAI's API leaves the stop string out
    assert cut.finish_reason == "stop"


def test_logprobs_in_chat_shape(tiny_run, client):
    prompt = ChatTemplate.of_model_dir(tiny_run / "model").render(MESSAGES)
    ref = client.completions.create(model="tiny", prompt=prompt, max_tokens=12, seed=2, logprobs=2).choices[0]
    got = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12, seed=2, logprobs=True,
                                         top_logprobs=2).choices[0]
    content = got.logprobs.content
    assert [e.token for e in content] == ref.logprobs.tokens
    assert [e.logprob for e in content] == pytest.approx(ref.logprobs.token_logprobs, abs=1e-6)
    assert "".join(e.token for e in content) == got.message.content
    for e, top in zip(content, ref.logprobs.top_logprobs):
        assert e.bytes == list(e.token.encode("utf-8"))
        assert {t.token: t.logprob for t in e.top_logprobs} == pytest.approx(top, abs=1e-6)
    only = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=5, seed=2, logprobs=True)
    assert [e.top_logprobs for e in only.choices[0].logprobs.content] == [[]] * 5
    streamed = list(client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12, seed=2,
                                                   logprobs=True, top_logprobs=2, stream=True))
    tokens = [e.token for ch in streamed for c in ch.choices if c.logprobs for e in c.logprobs.content]
    assert tokens == ref.logprobs.tokens


def test_header_says_whose_template(tiny_run, server, tmp_path):
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 3, "seed": 1}
    r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200 and r.headers["x-chat-template"] == "model"
    bare = with_template(tiny_run / "model", tmp_path / "bare", None)  # exported before templates were recorded
    with ServeProcess(f"run={bare}", "model_name=tiny", env={"OMP_NUM_THREADS": "1"}) as s:
        for stream in (False, True):
            r = httpx.post(s.url + "/v1/chat/completions", json={**body, "stream": stream}, timeout=60)
            assert r.status_code == 200 and r.headers["x-chat-template"] == "default"
        got = r.text.split("\n\n")[0].removeprefix("data: ")
        assert json.loads(got)["choices"][0]["delta"]["role"] == "assistant"


@pytest.mark.parametrize("kwargs, needle, param", [
    ({"messages": []}, "non-empty list", "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "role is 'wizard'", "messages"),
    ({"top_logprobs": 2}, "top_logprobs needs logprobs", "top_logprobs"),
    ({"logprobs": True, "top_logprobs": 9}, "top_logprobs must be between 0 and 5", "top_logprobs"),
    ({"max_completion_tokens": 10**6}, "max_tokens (max_completion_tokens) must be", "max_tokens"),
    ({"messages": [{"role": "user", "content": "\u6f22"}]}, "The rendered messages contain", "messages"),
    ({"extra_body": {"tools_choice": "auto"}}, "unknown field 'tools_choice'", "tools_choice"),
])
def test_chat_errors_are_openai_shaped(client, kwargs, needle, param):
    args = {"model": "tiny", "messages": MESSAGES, "max_tokens": 5, **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**args)
    assert needle in info.value.message, info.value.message
    assert info.value.response.json()["error"]["param"] == param


def test_train_records_the_chat_template_setting(tmp_path, tiny_corpus, cli_in_process):
    """``train chat_template=<Jinja>`` as a shell passes it (one argument): recorded as typed in
    tokenizer_config.json; an invalid template is refused before the run starts (tests/e2e's sweep)."""
    from helpers import TINY

    run = tmp_path / "run"
    cli_in_process("train", "data=text", f"data.path={tiny_corpus}", *TINY, "trainer.max_steps=2",
                   f"chat_template={SHAKESPEARE}", f"hydra.run.dir={run}", cwd=tmp_path)
    config = json.loads((run / "model" / "tokenizer_config.json").read_text())
    assert config["chat_template"] == SHAKESPEARE
    assert ChatTemplate.of_model_dir(run / "model").render(MESSAGES) == "ROMEO:\nROMEO: what light\n\nJULIET:\n"
    from lstm_pipeline.generation.pretrained import from_pretrained

    copy = from_pretrained(run / "model").save_pretrained(tmp_path / "copy")  # a re-save keeps it
    assert json.loads((copy / "tokenizer_config.json").read_text())["chat_template"] == SHAKESPEARE


def test_docs_show_the_tested_shakespeare_template():
    from helpers import ROOT

    assert f"chat_template='{SHAKESPEARE}'" in (ROOT / "docs" / "serve.md").read_text()
