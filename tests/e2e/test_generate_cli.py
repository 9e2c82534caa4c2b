"""lstm-pipeline generate: the prompts_file and interactive modes, strategies and bad input."""
import io
import json
import sys

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from lstm_pipeline.config.checks import check
from lstm_pipeline.config.schema import register_schemas
from lstm_pipeline.generation.beam import BeamSearch
from lstm_pipeline.commands.generate import run as generate_cmd
from lstm_pipeline.generation.strategies import Greedy
from lstm_pipeline.artifacts.model_dir import load_pretrained

PROMPTS = ["First", "ROMEO:", "", "the"]


def cfg_for(*overrides):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_module("lstm_pipeline.conf", version_base="1.3"):
        return compose("generate", overrides=list(overrides))


def test_prompts_file_writes_json_lines_equal_to_the_api(tiny_run, tmp_path, cli_in_process):
    pfile, out = tmp_path / "prompts.txt", tmp_path / "out.jsonl"
    pfile.write_text("\n".join(PROMPTS) + "\n")
    cli_in_process("generate", f"run={tiny_run}", f"prompts_file={pfile}", f"output_file={out}", "decoding=greedy",
                   "max_new_tokens=12", "batch_size=3")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    model, tok, config = load_pretrained(tiny_run)
    ids = [tok.encode(p) for p in PROMPTS]
    ref = Greedy().generate(model, ids, 12, bos_token_id=config["bos_token_id"])
    assert [r["prompt"] for r in records] == PROMPTS and [r["line"] for r in records] == [1, 2, 3, 4]
    assert [r["tokens"] for r in records] == ref.sequences
    assert [r["text"] for r in records] == [tok.decode(s) for s in ref.sequences]
    assert [r["score"] for r in records] == pytest.approx(ref.scores, abs=1e-4)


def test_prompts_file_beam_and_seeded_samples_to_stdout(tiny_run, tmp_path, capsys):
    pfile = tmp_path / "prompts.txt"
    pfile.write_text("First\nthe\n")
    args = [f"run={tiny_run}", f"prompts_file={pfile}", "max_new_tokens=10"]
    generate_cmd(cfg_for(*args, "decoding=beam", "decoding.num_beams=3", "decoding.num_return_sequences=2"))
    beam = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    model, tok, config = load_pretrained(tiny_run)
    ref = BeamSearch(num_beams=3, num_return_sequences=2).generate(model, [tok.encode("First"), tok.encode("the")], 10)
    assert [r["tokens"] for r in beam] == ref.sequences and [r["sample"] for r in beam] == [0, 1, 0, 1]
    generate_cmd(cfg_for(*args, "num_samples=2", "seed=4", "decoding=nucleus"))
    a = capsys.readouterr().out
    generate_cmd(cfg_for(*args, "num_samples=2", "seed=4", "decoding=nucleus"))
    assert a == capsys.readouterr().out
    assert [json.loads(x)["line"] for x in a.splitlines()] == [1, 1, 2, 2]


def test_interactive_loop_reads_prompts_until_end_of_input(tiny_run, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("First\nh\u00e9llo\nthe\n"))
    generate_cmd(cfg_for(f"run={tiny_run}", "interactive=true", "decoding=greedy", "max_new_tokens=15"))
    captured = capsys.readouterr()
    model, tok, config = load_pretrained(tiny_run)
    expect = [p + tok.decode(Greedy().generate(model, [tok.encode(p)], 15).sequences[0]) for p in ("First", "the")]
    assert captured.out.splitlines() == expect  # each prompt streamed as its own line
    assert "'\u00e9' (U+00E9)" in captured.err and "on_unknown" in captured.err  # a bad prompt does not end the loop


def test_stop_strings_and_eos_token_from_the_command_line(tiny_run, capsys):
    model, tok, config = load_pretrained(tiny_run)
    free = tok.decode(Greedy().generate(model, [tok.encode("First")], 30).sequences[0])
    stop = free[6:8]
    texts = generate_cmd(cfg_for(f"run={tiny_run}", "prompt=First", "decoding=greedy", "max_new_tokens=30",
                                 f"stop_strings=[{json.dumps(stop)}]"))
    assert texts[0] == "First" + free[: free.index(stop) + len(stop)]
    with pytest.raises(ValueError, match="eos_token='<nope>' is not in the tokenizer's vocabulary"):
        generate_cmd(cfg_for(f"run={tiny_run}", "eos_token='<nope>'"))


@pytest.mark.parametrize("overrides,match", [
    (["decoding=nucleus", "decoding.top_p=1.5"], r"top_p must be in \(0, 1\]"),
    (["decoding=beam", "decoding.num_beams=2", "decoding.num_return_sequences=3"],
     r"decoding.num_return_sequences \(3\) must be between 1 and decoding.num_beams \(2\)"),
    (["decoding=sample", "decoding.temperature=0"], "temperature must be > 0.*decoding=greedy"),
    (["output_file=x.jsonl"], "output_file= is written in prompts_file mode only"),
    (["prompts_file=/nonexistent/p.txt"], "prompts_file=/nonexistent/p.txt: no such file"),
    (["prompts_file=x", "interactive=true"], "choose one"),
])
def test_bad_input_names_the_setting(overrides, match):
    """The check pass (config.checks.check, run by the CLI before the command) names the setting."""
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        check("generate", cfg_for("run=/nonexistent/run", *overrides))


def test_the_decoder_and_its_processors_are_built_once_per_command(tiny_run, monkeypatch, capsys):
    from lstm_pipeline.generation import strategies

    built = {"decoders": 0, "processors": 0}
    init, build = strategies.DecodingStrategy.__init__, strategies.build_processors

    def counting_init(self, **settings):
        built["decoders"] += 1
        init(self, **settings)

    def counting_build(*args, **kwargs):
        built["processors"] += 1
        return build(*args, **kwargs)

    cfg = cfg_for(f"run={tiny_run}", "prompt=First", "decoding=nucleus", "decoding.temperature=0.7",
                  "max_new_tokens=5", "seed=1", "stream=false")  # (composing reads every decoder's defaults)
    monkeypatch.setattr(strategies.DecodingStrategy, "__init__", counting_init)
    monkeypatch.setattr(strategies, "build_processors", counting_build)
    texts = generate_cmd(cfg)
    assert built == {"decoders": 1, "processors": 1}
    assert capsys.readouterr().out.startswith("First") and texts
