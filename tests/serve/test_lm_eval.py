"""lm-evaluation-harness (``lm_eval``, its ``local-completions`` model) against a real
``lstm-pipeline serve`` process: echo + prompt logprobs, the tokenizer endpoints, and a perplexity
equal to ``lstm-pipeline evaluate``'s on the same text. The tasks are YAML files in
``lm_eval_tasks/`` over JSON-lines files this test writes; nothing is downloaded."""
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval", reason="lm-evaluation-harness is a test dependency (pip install 'lstm-pipeline[dev]')")
pytest.importorskip("fastapi", reason="serve needs its extra (pip install 'lstm-pipeline[serve]')")

from helpers import ServeProcess, run_cli  # noqa: E402

TASKS = Path(__file__).parent / "lm_eval_tasks"
#: no trailing newline: lm_eval renders doc_to_target with Jinja, which drops one
DOC = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
       "First Citizen:\nYou are all resolved rather to die than to famish?")


@pytest.fixture(scope="module")
def server(tiny_run):
    with ServeProcess(f"run={tiny_run}", "model_name=tiny", "max_prompt_tokens=4096",
                      env={"OMP_NUM_THREADS": "1"}) as s:
        yield s


def lm_eval(server, task: str, cwd: Path) -> dict:
    """``lm_eval --model local-completions`` on ``task`` (run in ``cwd``, where its data file is);
    returns the task's results."""
    out = cwd / "out"
    cmd = [sys.executable, "-m", "lm_eval", "--model", "local-completions", "--model_args",
           f"model=tiny,base_url={server.url}/v1/completions,tokenizer_backend=remote,max_length=4096",
           "--tasks", task, "--include_path", str(TASKS), "--output_path", str(out)]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    found = sorted(out.rglob("results_*.json"))
    assert found, proc.stdout[-3000:]
    return json.loads(found[-1].read_text())["results"][task]


def test_word_perplexity_equals_evaluate(server, tiny_run, tmp_path):
    """One window holds the whole document (max_length > its tokens), read from the zero state after
    the prefix token lm_eval puts first (the model's bos token, from /tokenizer_info). evaluate's
    carried pass over the bos token followed by the document reads the same tokens from the same
    state and scores every one after the first: the same log-likelihood, up to float rounding."""
    (tmp_path / "doc.jsonl").write_text(json.dumps({"text": DOC}) + "\n")
    got = lm_eval(server, "lstm_pipeline_rolling", tmp_path)["word_perplexity,none"]
    text = tmp_path / "bos_doc.txt"
    text.write_text("\n" + DOC)  # "\n" is the tiny model's bos token (id 1)
    report = tmp_path / "eval.json"
    run_cli("evaluate", f"run={tiny_run}", "data=text", f"data.path={text}", "data.val_fraction=0",
            "data.test_fraction=0", "splits=[train]", "batch_size=1", f"report={report}")
    m = json.loads(report.read_text())["train"]
    assert m["tokens"] == len(DOC)  # every character of the document is scored, once
    nll = m["loss"] * m["tokens"]
    words = len(re.split(r"\s+", DOC))  # lm_eval's count_words
    expected = math.exp(nll / words)
    print(f"lm_eval word_perplexity {got!r}, evaluate's {expected!r}, relative {abs(got / expected - 1):.2e}")
    assert got == pytest.approx(expected, rel=1e-4)


def test_multiple_choice_task_runs(server, tmp_path):
    rows = [{"question": "First Citizen:\nBefore we proceed any further, hear me", "choices": ["speak.", "zqxj."],
             "label": 0},
            {"question": "All:\nSpeak,", "choices": ["speak.", "xxxx."], "label": 0}]
    (tmp_path / "choice.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = lm_eval(server, "lstm_pipeline_choice", tmp_path)
    assert 0.0 <= res["acc,none"] <= 1.0 and 0.0 <= res["acc_norm,none"] <= 1.0
