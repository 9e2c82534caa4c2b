"""Every ``lstm-pipeline`` command in the code blocks of README.md and docs/*.md is run, shrunk
(issue 13): train gets a tiny model, two steps and the tiny corpus; run/ckpt_path placeholders point
at a tiny trained run. A command the docs show failing (the next line in its block is
``lstm-pipeline <cmd>: error: ...``) must fail with that message. Commands that need what a test
machine does not have are skipped, each with its reason (SKIPS below).

Each command runs through ``lstm_pipeline.cli.main`` in this process (the ``cli_in_process`` fixture:
its exit status, stdout and stderr, without a new interpreter's imports per command), except the
first the docs show working and the first they show failing (THROUGH_A_PROCESS): those run as
``python -m lstm_pipeline.cli`` processes, so a documented command's real exit status stays tested."""
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow  # about 70 commands, a few seconds each

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: (pattern in the command, why it is not run here)
SKIPS = [
    (r"data=(hub|disk|wikitext2|wikitext103|ptb|enwik8)\b|experiment=awd_lstm", "needs a dataset download or a dataset on disk"),
    (r"data=files", "needs the reader's own data files"),
    (r"trainer=ddp", "several processes: tests/training/test_ddp.py runs DDP"),
    (r"mogrifier|mirostat|ebooks|with_samples", "a plugin from plugins/ (tests/plugins/test_plugins_install.py installs them)"),
    (r"top_a|my_filter", "a plugin's logits processor (tests/plugins/test_plugin_processors.py switches one on)"),
    (r"\bsru\b|sqlite|lstm-pipeline-sru", "the SRU example plugin docs/plugins.md walks through (not installed here)"),
    (r"^lstm-pipeline push\b", "needs the Hugging Face Hub (tests/artifacts/test_hub_network.py fakes it)"),
    *([] if importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") else
      [(r"hydra/sweeper=optuna", "needs hydra-optuna-sweeper (pip install hydra-optuna-sweeper; in the dev extra)")]),
    (r"logger=(wandb|mlflow|tensorboard)\b(?!.*error)", "an optional logger package"),
]

SHRINK_TRAIN = ["model.hidden_size=8", "model.embedding_dim=8", "batching.batch_size=2", "batching.bptt=8",
                "batching.eval_batch_size=2", "trainer.max_steps=2", "trainer.val_check_interval=2",
                "trainer.enable_progress_bar=false", "sample.max_new_tokens=5"]  # the last two: also on resume
#: numeric settings capped (the first value of a sweep at the cap, the next at twice it, ...)
CAPS = {"max_new_tokens": 10, "decoding.num_beams": 4, "trainer.max_steps": 4, "model.hidden_size": 8,
        "model.embedding_dim": 8, "model.cell.proj_size": 4, "trainer.val_check_interval": 2,
        "hydra.sweeper.n_trials": 2}
RUN_PLACEHOLDER = re.compile(r"^(runs/[^ \]]*|<run>|<run dir>|/tmp/h6work/run|run|downloaded-model)$")


def doc_commands():
    """(file, line, command, expected error or None) for every lstm-pipeline command in a code block."""
    for path in DOCS:
        lines = path.read_text().splitlines()
        in_block, i = False, 0
        while i < len(lines):
            line = lines[i]
            if line.lstrip().startswith("```"):
                in_block = not in_block
                i += 1
                continue
            text = line.strip().removeprefix("$ ")
            start = i
            if in_block and re.match(r"lstm-pipeline (-|(train|generate|evaluate|export|plot|push|plugins)\b(?!:))", text) \
                    and ": error: " not in text:
                while text.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    text = text[:-1] + " " + lines[i].strip()
                nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
                expected = nxt.split(": error: ", 1)[1] if re.match(r"lstm-pipeline [\w ]+: error: ", nxt) else None
                yield path.name, start + 1, text, expected
            i += 1


CASES = list(doc_commands())


def _skip_reason(command: str, expected: str | None) -> str | None:
    command = " ".join(shlex.split(command, comments=True))
    if expected is not None:  # the documented error is what must come out: run, unless it is a plugin's
        return next((why for pattern, why in SKIPS if "plugin" in why and re.search(pattern, expected)), None)
    for pattern, why in SKIPS:
        if re.search(pattern, command):
            return why
    return None


def _shrink(args: list[str], tiny_run: Path, tiny_corpus: Path, tmp_path: Path) -> list[str]:
    command, rest = args[0], args[1:]
    out = []
    for a in rest:
        key, sep, value = a.partition("=")
        if sep and key in ("run", "ckpt_path") and RUN_PLACEHOLDER.match(value):
            if key == "ckpt_path":
                copy = tmp_path / "resumed"
                if not copy.exists():
                    shutil.copytree(tiny_run, copy)
                value = str(copy)
            else:
                value = str(tiny_run)
        elif sep and key == "run" and value.startswith("["):
            value = "[" + ",".join(str(tiny_run) for _ in value[1:-1].split(",")) + "]"
        elif sep and key == "data.path":
            value = str(tiny_corpus)
        elif sep and key == "out" and value.startswith("/tmp/h6work"):
            value = str(tmp_path / "plots")
        elif sep and key in CAPS and re.fullmatch(r"[\d,]+", value):  # sweeps too: 256,512 -> 8,16
            value = ",".join(str(min(int(v), CAPS[key] * (j + 1))) for j, v in enumerate(value.split(",")))
        out.append(f"{key}{sep}{value}" if sep else a)
    if command == "train" and "--help" not in out:
        resumed = any(a.startswith("ckpt_path=") for a in out)
        if not any(a.startswith("data") for a in out) and not resumed:
            out = ["data=text", f"data.path={tiny_corpus}", *out]
        given = {a.split("=", 1)[0] for a in out}
        # a resumed run keeps its own model and batching (the recorded overrides): only the output shrinks
        shrink = SHRINK_TRAIN[-2:] if resumed else [o for o in SHRINK_TRAIN if o.split("=", 1)[0] not in given]
        out = [*out, *shrink]
        if not resumed:
            out.append(f"hydra.run.dir={tmp_path / 'run'}")
        if "-m" in out:
            out.append(f"hydra.sweep.dir={tmp_path / 'sweep'}")
    return [command, *out]


#: (doc, line) of the commands run as real processes: the first the docs show working, the first
#: they show failing
THROUGH_A_PROCESS = {next(c[:2] for c in CASES if not _skip_reason(c[2], c[3]) and (c[3] is None) == ok)
                     for ok in (True, False)}


@pytest.mark.parametrize("doc,line,command,expected", CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_documented_command_runs(doc, line, command, expected, tiny_run, tiny_corpus, tmp_path, cli_in_process):
    reason = _skip_reason(command, expected)
    if reason:
        pytest.skip(reason)
    args = shlex.split(command, comments=True)[1:]
    args = _shrink(args, tiny_run, tiny_corpus, tmp_path)
    (tmp_path / "prompts.txt").write_text("First\nROMEO:\n")
    if (doc, line) in THROUGH_A_PROCESS:
        proc = subprocess.run([sys.executable, "-m", "lstm_pipeline.cli", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600, input="ROMEO:\n")  # interactive=true reads one prompt, then EOF
    else:
        proc = cli_in_process(*args, cwd=tmp_path, check=False, input="ROMEO:\n")
    if expected is not None:
        assert proc.returncode == 1, (command, proc.stdout[-2000:])
        assert expected[:40] in proc.stderr, (command, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr
    else:
        assert proc.returncode == 0, (command, args, proc.stdout[-2000:], proc.stderr[-3000:])


def test_the_sweep_finds_the_documented_commands():
    assert len(CASES) > 50 and len(THROUGH_A_PROCESS) == 2
    assert any("plot run=" in c[2] for c in CASES) and any(c[3] for c in CASES)
