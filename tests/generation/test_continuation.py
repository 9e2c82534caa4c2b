"""Text after a prompt: word-level decoders join words with spaces, so the first generated word must
come after a space, in every place that shows a prompt and what followed it."""
import json

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from lstm_pipeline.config.schema import register_schemas
from lstm_pipeline.commands.generate import run as generate_cmd
from lstm_pipeline.generation.streamer import TextStreamer
from lstm_pipeline.artifacts.model_dir import save_pretrained
from lstm_pipeline.models.lm import RecurrentLM
from lstm_pipeline.registry import TOKENIZERS
from lstm_pipeline.tokenization.base import TextTokenizer

TEXTS = ["the cat sat on the mat", "the dog ate the bone", "a cat and a dog sat here"] * 10


def trained(name: str, **kw) -> TextTokenizer:
    return TextTokenizer(TOKENIZERS.build({"name": name, **kw}).train(TEXTS))


@pytest.mark.parametrize("name,kw", [("word", {}), ("wordpiece", {"vocab_size": 40}), ("char", {}),
                                     ("byte_bpe", {"vocab_size": 280})])
def test_prompt_plus_continuation_reads_as_the_whole_text(name, kw):
    tk = trained(name, **kw)
    prompt, new = tk.encode("the cat"), tk.encode("sat on")
    cont = tk.continuation(prompt, new)
    assert tk.decode(prompt) + cont == tk.decode(prompt + new)
    if name in ("word", "wordpiece"):
        assert cont == " sat on" and tk.decode(new) == "sat on"  # decode alone loses the space
    assert tk.continuation([], new) == tk.decode(new)


@pytest.mark.parametrize("name", ["word", "char"])
def test_streamed_text_equals_prompt_plus_continuation(name, tmp_path):
    import io

    tk = trained(name)
    prompt, new = tk.encode("the dog"), tk.encode("ate the bone")
    out = io.StringIO()
    streamer = TextStreamer(tk, out, prompt="the dog", prompt_ids=prompt)
    for t in new:
        streamer.put(t)
    streamer.end()
    assert out.getvalue() == "the dog" + tk.continuation(prompt, new) + "\n"


@pytest.fixture
def word_model_dir(tmp_path):
    tk = trained("word")
    torch.manual_seed(0)
    cfg = {"cell": {"name": "lstm"}, "embedding_dim": 8, "hidden_size": 8, "num_layers": 1}
    model = RecurrentLM(tk.vocab_size, **cfg).eval()
    return save_pretrained(model, cfg, tk, tmp_path / "model", extra={"bos_token_id": 0}, model_card=False)


def _generate(*overrides):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_module("lstm_pipeline.conf", version_base="1.3"):
        generate_cmd(compose("generate", overrides=list(overrides)))


@pytest.mark.parametrize("stream", ["true", "false"])
def test_generate_puts_a_space_after_a_word_prompt(word_model_dir, capsys, stream):
    _generate(f"run={word_model_dir}", "prompt=the cat", "decoding=greedy", "max_new_tokens=5", f"stream={stream}")
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("the cat ") and "  " not in line  # one space between the prompt and the rest
    assert len(line.split()) == 2 + 5


def test_prompts_file_text_continues_the_prompt(word_model_dir, tmp_path):
    pfile, out = tmp_path / "prompts.txt", tmp_path / "out.jsonl"
    pfile.write_text("the cat\n\n")
    _generate(f"run={word_model_dir}", f"prompts_file={pfile}", f"output_file={out}", "decoding=greedy",
              "max_new_tokens=4")
    first, empty = [json.loads(line) for line in out.read_text().splitlines()]
    assert first["text"].startswith(" ") and len((first["prompt"] + first["text"]).split()) == 2 + 4
    assert not empty["text"].startswith(" ")  # nothing to continue


def test_pretrained_generate_returns_what_follows_the_prompt(word_model_dir):
    from lstm_pipeline.generation.pretrained import from_pretrained

    lm = from_pretrained(word_model_dir)
    text = lm.generate("the cat", max_new_tokens=3, decoding={"name": "greedy"})
    assert text.startswith(" ") and len(("the cat" + text).split()) == 2 + 3
