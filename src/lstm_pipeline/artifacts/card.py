"""The generated ``README.md`` model card of an exported model directory, built with
``huggingface_hub``'s :class:`~huggingface_hub.ModelCard` and :class:`~huggingface_hub.ModelCardData`:
Hub metadata (``library_name``, ``pipeline_tag``, ``tags``, ``license``, ``datasets``, ``language``
and a ``model-index`` of the evaluation metrics), then architecture, data, tokenizer, metrics, a
sample and how to load the model (a snippet that runs on this model, under its real name).

:func:`refresh_model_card` rewrites the metadata, the metrics and the "How to load" section of an
existing card (``push`` does, with the Hub repo id and the run's ``eval.json``)."""
from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any, Callable, Mapping

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..atomic import write_text

#: ``(model, tokenizer, config, decoding) -> (prompt, text)``: the card's sample
CardSample = Callable[..., tuple[str, str]]

#: the bundled corpus (``data.name=text`` with no path) is Tiny Shakespeare, as on the Hub
BUNDLED_DATASET = "karpathy/tiny_shakespeare"
#: Hub datasets whose language is known (the card's ``language``)
KNOWN_LANGUAGES = {BUNDLED_DATASET: "en", "wikitext": "en", "Salesforce/wikitext": "en",
                   "ptb_text_only": "en", "ptb-text-only/ptb_text_only": "en"}
#: config.json metric key / eval.json metric -> (model-index metric type, its display name)
METRICS = {"loss": ("loss", "cross-entropy (nats/token)"), "ppl": ("perplexity", "perplexity"),
           "bpc": ("bpc", "bits per character"), "acc": ("accuracy", "next-token accuracy")}
#: card settings (``config["card"]``, or ``refresh_model_card``'s keywords)
CARD_SETTINGS = ("license", "language", "datasets")


def render_model_card(model, tokenizer, config: Mapping[str, Any], decoding: Mapping[str, Any],
                      repo_id: str | None = None, sample: CardSample | None = None,
                      eval_report: Mapping[str, Any] | None = None) -> str:
    """The model card's markdown: Hub front matter (:func:`card_data`), then architecture, data,
    tokenizer, metrics, a sample (when ``sample`` is given: ``sample(model, tokenizer, config,
    decoding)`` gives (prompt, text)) and how to load the model named ``repo_id`` (a Hub id or the
    model directory's path). ``eval_report`` is an ``evaluate`` report (``{split: {loss, ppl, bpc}}``)."""
    name = repo_id or "path/to/model"
    cell = dict(dict(config.get("model") or {}).get("cell") or {})
    prompt, text = sample(model, tokenizer, config, decoding) if sample else (None, None)
    sections = [
        f"# {cell.get('name', 'recurrent').upper()} language model (lstm-pipeline)\n\n"
        "A recurrent language model trained with lstm-pipeline. Loading it reads "
        "JSON and safetensors only: no code runs.\n",
        _architecture(model, config), _data_and_tokenizer(tokenizer, config),
        _metrics(metric_rows(config, eval_report))]
    if prompt is not None:
        sections.append(_sample(prompt, text, decoding))
    sections.append(_how_to_load(name, loadable_prompt(tokenizer, config)))
    data = card_data(config, name, eval_report)
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(sections)))


def dataset_id(data: Mapping[str, Any]) -> str | None:
    """The ``datasets`` entry of the card for the run's data settings: a Hub id for a Hub dataset or
    the bundled corpus, else a description naming the files (never a local absolute path)."""
    if not data:
        return None
    path = data.get("path")
    if data.get("name") == "text" and not path:
        return BUNDLED_DATASET
    if data.get("name") == "hub" and isinstance(path, str) and not _is_local(path):
        return path
    files = [os.path.basename(str(p).rstrip("/")) for p in _paths(path)]
    return f"local {data.get('name', 'data')} files: {', '.join(files)}" if files else None


def card_data(config: Mapping[str, Any], name: str, eval_report: Mapping[str, Any] | None = None,
              **settings: Any) -> ModelCardData:
    """The Hub metadata: ``library_name``, ``pipeline_tag: text-generation``, ``tags``, ``license`` and
    ``language`` (``config["card"]`` or ``settings``; not stated by default except a known dataset's
    language), ``datasets`` (:func:`dataset_id`) and ``model-index`` (the metrics as ``EvalResult``)."""
    chosen = {**dict(config.get("card") or {}), **{k: v for k, v in settings.items() if v is not None}}
    cell = dict(dict(config.get("model") or {}).get("cell") or {})
    tok = dict(config.get("tokenizer") or {})
    dataset = chosen.get("datasets") or dataset_id(dict(config.get("data") or {}))
    datasets = [dataset] if isinstance(dataset, str) else list(dataset or [])
    language = chosen.get("language") or next((KNOWN_LANGUAGES[d] for d in datasets if d in KNOWN_LANGUAGES), None)
    tags = ["lstm-pipeline", str(cell.get("name", "rnn")), "recurrent-language-model",
            *([f"{tok['name']}-tokenizer"] if tok.get("name") else [])]
    results = [EvalResult(task_type="text-generation", task_name="Language modelling",
                          dataset_type=datasets[0] if datasets else "unknown", dataset_name=datasets[0] if datasets
                          else "unknown", dataset_split=split, metric_type=METRICS[m][0], metric_name=METRICS[m][1],
                          metric_value=value) for split, m, value in metric_rows(config, eval_report)]
    return ModelCardData(library_name="lstm-pipeline", pipeline_tag="text-generation", tags=tags,
                         license=chosen.get("license"), language=language, datasets=datasets or None,
                         model_name=_model_name(name) if results else None, eval_results=results or None)


def metric_rows(config: Mapping[str, Any], eval_report: Mapping[str, Any] | None = None) -> list[tuple]:
    """``(split, metric, value)`` rows: ``evaluate``'s report (every split) where given, else the
    validation metrics recorded at export (``config["metrics"]``: ``val_loss``, ``val_ppl``, ``val_bpc``,
    ``val_acc``); evaluate's figures replace the export's for the same split and metric."""
    rows = {}
    for key, value in (config.get("metrics") or {}).items():
        split, _, metric = key.partition("_")
        if split == "val" and metric in METRICS and isinstance(value, (int, float)):
            rows[("validation", metric)] = float(value)
    for split, found in (eval_report or {}).items():
        for metric in METRICS:
            if isinstance(found, Mapping) and isinstance(found.get(metric), (int, float)):
                rows[(split, metric)] = float(found[metric])
    return [(split, metric, value) for (split, metric), value in rows.items()]


def loadable_prompt(tokenizer, config: Mapping[str, Any]) -> str:
    """The run's sample prompt when this tokenizer encodes all of it, else ``""`` (the start-of-text
    state): the card's snippet must run on this model."""
    prompt = str((config.get("sample") or {}).get("prompt") or "")
    try:
        ids = tokenizer.encode_checked(prompt)
    except ValueError:
        return ""
    return prompt if tokenizer.decode(ids) == prompt else ""


def _model_name(name: str) -> str:
    """The model-index name: a Hub id as is; a local ``<run>/model`` by its run's name."""
    if name.count("/") <= 1 and not _is_local(name):
        return name
    path = Path(name)
    return path.parent.name if path.name == "model" and path.parent.name else path.name


def _is_local(path: str) -> bool:
    return path.startswith((".", "/", "~")) or os.path.exists(os.path.expanduser(path)) or path.count("/") > 1


def _paths(path) -> list:
    if isinstance(path, Mapping):
        return [p for v in path.values() for p in _paths(v)]
    if isinstance(path, (list, tuple)):
        return [p for v in path for p in _paths(v)]
    return [path] if path else []


def _scrub(value):
    """``value`` with every absolute path replaced by its file name (a card is published)."""
    if isinstance(value, Mapping):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return os.path.basename(value.rstrip("/")) if isinstance(value, str) and os.path.isabs(value) else value


def _architecture(model, config: Mapping[str, Any]) -> str:
    """The architecture table: cell, sizes, input, dropout, ties, output layer, vocabulary and
    the number of parameters (shared ones counted once)."""
    m = dict(config.get("model") or {})
    cell = dict(m.get("cell") or {})
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return "\n".join([
        "## Architecture",
        "",
        "| | |",
        "|---|---|",
        f"| cell | `{json.dumps(cell, sort_keys=True)}` |",
        f"| layers x hidden size | {m.get('num_layers')} x {m.get('hidden_size')} |",
        f"| input | {m.get('input_encoding', 'embedding')}"
        + (f" ({m.get('embedding_dim')} dims)" if m.get("input_encoding", "embedding") == "embedding" else "") + " |",
        f"| dropout | {m.get('dropout')} |",
        f"| tied input/output weights | {m.get('tie_weights', False)} |",
        *([f"| output layer | adaptive softmax: cutoffs {m.get('adaptive_cutoffs')}, div_value "
           f"{m.get('adaptive_div_value')}, clusters by {config.get('adaptive_order', 'token id')} |"]
          if m.get("output") == "adaptive" else []),
        f"| vocabulary | {config.get('vocab_size')} tokens |",
        f"| parameters | {n_params:,} |",
        "",
    ])


def _data_and_tokenizer(tokenizer, config: Mapping[str, Any]) -> str:
    """The data and tokenizer sections, from the run's recorded config (local paths as file names)."""
    data = _scrub(dict(config.get("data") or {}))
    tok = config.get("tokenizer") or {}
    return "\n".join([
        "## Data",
        "",
        f"`{json.dumps(data, sort_keys=True)}`" if data else "Not recorded.",
        "",
        "## Tokenizer",
        "",
        f"`{json.dumps(tok, sort_keys=True)}` ({tokenizer.vocab_size} tokens, saved as `tokenizer.json`).",
        "",
    ])


def _metrics(rows: list[tuple]) -> str:
    """The metrics section: a table (numbers to 4 decimals), or "None recorded."."""
    lines = ["## Metrics", ""]
    if rows:
        lines += ["| split | metric | value |", "|---|---|---|"]
        lines += [f"| {split} | {metric} | {value:.4f} |" for split, metric, value in rows]
    else:
        lines.append("None recorded.")
    return "\n".join(lines) + "\n"


def _sample(prompt: str, text: str, decoding: Mapping[str, Any]) -> str:
    """The sample section: the decoding settings and the prompt with its continuation."""
    return "\n".join([
        f"## Sample ({json.dumps(dict(decoding), sort_keys=True)}, seed 0)",
        "",
        "```text",
        (prompt + text).replace("```", "'''"),
        "```",
        "",
    ])


def _how_to_load(name: str, prompt: str) -> str:
    """How to load the model ``name`` (a Hub id or a path): Python, the command line, transformers;
    ``prompt`` is one this model's tokenizer encodes."""
    cli = ["lstm-pipeline", "generate", f"run={name}", *([f"prompt={prompt}"] if prompt else []), "max_new_tokens=200"]
    return "\n".join([
        "## How to load",
        "",
        "```python",
        "import lstm_pipeline",
        f"lm = lstm_pipeline.from_pretrained({name!r})",
        f"print(lm.generate({prompt!r}, max_new_tokens=200))",
        "```",
        "",
        "From the command line:",
        "",
        "```bash",
        shlex.join(cli),
        "```",
        "",
        "With `transformers` (`pip install 'lstm-pipeline[hf]'`):",
        "",
        "```python",
        "import lstm_pipeline.hf_adapter  # registers the architecture with the Auto classes",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f"model = AutoModelForCausalLM.from_pretrained({name!r})",
        f"tokenizer = AutoTokenizer.from_pretrained({name!r})",
        "```",
        "",
    ])


def write_model_card(model_dir: Path, model, tokenizer, config: Mapping[str, Any],
                     sample: CardSample | None = None, name: str | None = None) -> Path:
    """Write ``model_dir/README.md`` (:func:`render_model_card`); ``name`` is the path or Hub id the
    card's "How to load" uses (default: ``model_dir``)."""
    gen = json.loads((Path(model_dir) / "generation_config.json").read_text())
    path = Path(model_dir) / "README.md"
    write_text(path, render_model_card(model, tokenizer, config, gen["decoding"], repo_id=name or str(model_dir),
                                       sample=sample))
    return path


def refresh_model_card(model_dir: str | Path, tokenizer, name: str, eval_report: Mapping[str, Any] | None = None,
                       **settings: Any) -> ModelCard:
    """``model_dir/README.md`` refreshed for ``name`` (a Hub repo id), not written: its metadata
    (:func:`card_data`; ``settings``: license, language, datasets, else the card's own), its metrics
    (``eval_report`` added) and its "How to load" section; the other sections (architecture,
    sample...) stay. ``card.save(path)`` writes it."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    path = model_dir / "README.md"
    old = ModelCard.load(path) if path.is_file() else None
    kept = {k: v for k, v in (old.data.to_dict() if old else {}).items() if k in CARD_SETTINGS}
    data = card_data(config, name, eval_report, **{**kept, **settings})
    body = old.text if old else ""
    body = _replace_section(body, "Metrics", _metrics(metric_rows(config, eval_report)))
    body = _replace_section(body, "How to load", _how_to_load(name, loadable_prompt(tokenizer, config)))
    return ModelCard(f"---\n{data.to_yaml()}\n---\n" + body)


def _replace_section(body: str, title: str, new: str) -> str:
    """``body`` with its ``## title`` section (up to the next ``## `` heading) replaced by ``new``
    (appended when missing)."""
    pattern = re.compile(rf"^## {re.escape(title)}\b.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(body):
        return pattern.sub(lambda _: new.rstrip("\n") + "\n\n", body, count=1).rstrip("\n") + "\n"
    return body.rstrip("\n") + "\n\n" + new
