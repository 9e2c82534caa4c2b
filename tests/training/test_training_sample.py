"""The sample printed at the end of training goes through the one generation entry point: a word-level
prompt the vocabulary does not know stays in context (was: `The<unk> acknowledges ...`, glued)."""
from helpers import TINY


def test_word_level_sample_keeps_the_space_after_an_unknown_prompt_word(tmp_path, cli_in_process):
    corpus = tmp_path / "words.txt"
    corpus.write_text("the cat sat on the mat and the dog ate the bone\n" * 200)
    run = tmp_path / "run"
    out = cli_in_process("train", "data=text", f"data.path={corpus}", "tokenizer=word", "sample.prompt=The",
                         *[o for o in TINY if not o.startswith("sample.")], "sample.max_new_tokens=6",
                         f"hydra.run.dir={run}", cwd=tmp_path).stdout
    text = out.split("--- sample (temperature 0.8) ---\n", 1)[1].splitlines()[0]
    assert text.startswith("The ") and len(text.split()) == 7, text


def test_the_export_records_which_distribution_provided_each_component(tmp_path, cli_in_process):
    import json

    run = tmp_path / "run"
    cli_in_process("train", *TINY, "trainer.max_steps=2", "trainer.val_check_interval=2", f"hydra.run.dir={run}", cwd=tmp_path)
    components = json.loads((run / "model" / "config.json").read_text())["components"]
    assert components["model.cell"]["name"] == "lstm" and components["model.cell"]["distribution"] == "lstm-pipeline"
