"""The generated ``README.md`` model card of an exported model directory: Hub metadata (YAML
front matter), then architecture, data, tokenizer, metrics, a sample and how to load it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

from .atomic import write_text

#: ``(model, tokenizer, config, decoding) -> (prompt, text)``: the card's sample
CardSample = Callable[..., tuple[str, str]]


def render_model_card(model, tokenizer, config: Mapping[str, Any], decoding: Mapping[str, Any],
                      repo_id: str | None = None, sample: CardSample | None = None) -> str:
    """The model card's markdown: Hub front matter, then architecture, data, tokenizer, metrics,
    a sample (when ``sample`` is given: ``sample(model, tokenizer, config, decoding)`` gives
    (prompt, text)) and how to load the model from ``repo_id`` (or a placeholder path)."""
    cell = dict(dict(config.get("model") or {}).get("cell") or {})
    prompt, text = sample(model, tokenizer, config, decoding) if sample else (None, None)
    lines = [*_front_matter(cell), *_architecture(model, config), *_data_and_tokenizer(tokenizer, config),
             *_metrics(config.get("metrics") or {})]
    if prompt is not None:
        lines += _sample(prompt, text, decoding)
    lines += _how_to_load(repo_id or "path/to/model", prompt)
    return "\n".join(lines)


def _front_matter(cell: Mapping[str, Any]) -> list[str]:
    """The Hub's YAML metadata and the card's title."""
    return [
        "---",
        "library_name: lstm-pipeline",
        "pipeline_tag: text-generation",
        "tags:",
        "- lstm-pipeline",
        f"- {cell.get('name', 'rnn')}",
        "- recurrent-language-model",
        "---",
        "",
        f"# {cell.get('name', 'recurrent').upper()} language model (lstm-pipeline)",
        "",
        "A recurrent language model trained with lstm-pipeline. Loading it reads "
        "JSON and safetensors only: no code runs.",
        "",
    ]


def _architecture(model, config: Mapping[str, Any]) -> list[str]:
    """The architecture table: cell, sizes, input, dropout, ties, output layer, vocabulary and
    the number of parameters (shared ones counted once)."""
    m = dict(config.get("model") or {})
    cell = dict(m.get("cell") or {})
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return [
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
    ]


def _data_and_tokenizer(tokenizer, config: Mapping[str, Any]) -> list[str]:
    """The data and tokenizer sections, from the run's recorded config."""
    data = config.get("data") or {}
    tok = config.get("tokenizer") or {}
    return [
        "## Data",
        "",
        f"`{json.dumps(data, sort_keys=True)}`" if data else "Not recorded.",
        "",
        "## Tokenizer",
        "",
        f"`{json.dumps(tok, sort_keys=True)}` ({tokenizer.vocab_size} tokens, saved as `tokenizer.json`).",
        "",
    ]


def _metrics(metrics: Mapping[str, Any]) -> list[str]:
    """The metrics section: a table (numbers to 4 decimals), or "None recorded."."""
    lines = ["## Metrics", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" if isinstance(v, (int, float)) else f"| {k} | {v} |"
                  for k, v in sorted(metrics.items())]
    else:
        lines.append("None recorded.")
    return lines


def _sample(prompt: str, text: str, decoding: Mapping[str, Any]) -> list[str]:
    """The sample section: the decoding settings and the prompt with its continuation."""
    return [
        "",
        f"## Sample ({json.dumps(dict(decoding), sort_keys=True)}, seed 0)",
        "",
        "```text",
        (prompt + text).replace("```", "'''"),
        "```",
    ]


def _how_to_load(name: str, prompt: str | None) -> list[str]:
    """How to load the model ``name``: Python, the command line, transformers."""
    return [
        "",
        "## How to load",
        "",
        "```python",
        "import lstm_pipeline",
        f"lm = lstm_pipeline.from_pretrained(\"{name}\")",
        f"print(lm.generate({prompt or ''!r}, max_new_tokens=200))",
        "```",
        "",
        "From the command line (a local directory):",
        "",
        "```bash",
        "lstm-pipeline generate run=path/to/model prompt=\"...\" max_new_tokens=200",
        "```",
        "",
        "With `transformers` (`pip install lstm-pipeline[hf]`):",
        "",
        "```python",
        "import lstm_pipeline.hf_adapter  # registers the architecture with the Auto classes",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f"model = AutoModelForCausalLM.from_pretrained(\"{name}\")",
        f"tokenizer = AutoTokenizer.from_pretrained(\"{name}\")",
        "```",
        "",
    ]


def write_model_card(model_dir: Path, model, tokenizer, config: Mapping[str, Any],
                     sample: CardSample | None = None) -> Path:
    gen = json.loads((Path(model_dir) / "generation_config.json").read_text())
    path = Path(model_dir) / "README.md"
    write_text(path, render_model_card(model, tokenizer, config, gen["decoding"], sample=sample))
    return path
