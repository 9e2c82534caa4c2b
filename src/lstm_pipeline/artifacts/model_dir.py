"""The exported model directory, laid out the way the Hugging Face Hub expects it:

``config.json`` (our keys plus ``model_type``/``architectures`` for ``transformers``),
``model.safetensors``, ``tokenizer.json`` + ``tokenizer_config.json``, ``generation_config.json``
(the default decoding) and a generated ``README.md`` model card (:mod:`.card`).

Writing is atomic (a temporary sibling directory renamed into place); loading reads JSON and
safetensors only, so opening a shared model never runs code. Hub repo ids are resolved in
:mod:`.hub`; the loaded model with its tokenizer is
:class:`lstm_pipeline.generation.pretrained.PretrainedLM`.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_model, save_model

from ..models.lm import RecurrentLM
from ..tokenization.base import TextTokenizer
from ..atomic import as_storage_error, file_mode, remove_stale_temporaries
from .card import CardSample, write_model_card
from .integrity import check_loaded_model

FORMAT_VERSION = 1
MODEL_DIRNAME = "model"
#: the decoding a model without a generation_config.json is sampled with (the training sample's)
DEFAULT_DECODING = {"name": "sample", "temperature": 0.8}
#: ``model_type`` under which the transformers adapter registers itself (see ``hf_adapter``)
HF_MODEL_TYPE = "lstm_pipeline"
HF_ARCHITECTURE = "LstmPipelineForCausalLM"
#: the files a model directory is made of (what a push uploads and a download fetches)
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "generation_config.json", "README.md")


class ModelDirError(FileNotFoundError):
    pass


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``): a reader sees the
    old model or the new one, never no model. False where the system cannot (then two renames)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def special_tokens(tokenizer: TextTokenizer, eos_token: str | None = None, bos_token_id: int | None = None) -> dict:
    """The special tokens a model directory records, from the tokenizer and the end-of-text token the
    model was trained with (``data.eos_token``):

    * ``eos_token`` / ``eos_token_id``: that token (None when the model was trained without one);
    * ``bos_token_id``: the token whose state starts a text (an empty prompt). After an end-of-text
      token a new document starts, so it is that token where there is one; else a newline for
      character models (byte-level ones spell it "Ċ"), else a sentence or document token the
      tokenizer has, else 0;
    * ``pad_token`` / ``pad_token_id``: a token that is never text, for padded batches in transformers:
      the end-of-text token, else a padding token the tokenizer has (``<pad>``), else the unknown token,
      else none (padding is then impossible).
    A real text token (the newline) is never declared as padding."""
    eos_id = tokenizer.token_to_id(eos_token) if eos_token else None
    if eos_token and eos_id is None:
        raise ValueError(f"The end-of-text token {eos_token!r} is not in the tokenizer's vocabulary.")
    if bos_token_id is None:
        bos_token_id = eos_id
    for tok in ("\n", "Ċ", "<eos>", "</s>", "<|endoftext|>", "[SEP]", "<s>", "[CLS]"):
        if bos_token_id is not None:
            break
        bos_token_id = tokenizer.token_to_id(tok)
    pad = eos_token if eos_id is not None else next(
        (t for t in ("<pad>", "[PAD]", tokenizer.unk_token) if t and tokenizer.token_to_id(t) is not None), None)
    pad_id = tokenizer.token_to_id(pad) if pad else None
    return {"bos_token_id": int(bos_token_id or 0), "eos_token": eos_token if eos_id is not None else None,
            "eos_token_id": eos_id, "pad_token": pad if pad_id is not None else None, "pad_token_id": pad_id}


def generation_config(decoding: Mapping[str, Any] | None, bos_token_id: int | None,
                      eos_token_id: int | None = None, max_new_tokens: int = 200, pad_token_id: int | None = None) -> dict:
    """``generation_config.json``: our decoding (``decoding``) and the same in transformers' keys, read
    from the decoder the registry builds (its settings, defaults included: nothing guessed here)."""
    from ..registry import DECODERS

    decoding = dict(decoding or DEFAULT_DECODING)
    settings = DECODERS.build(decoding).settings
    name = decoding["name"]
    hf: dict[str, Any] = {"do_sample": "temperature" in settings and name != "beam", "num_beams": 1,
                          "max_new_tokens": max_new_tokens}
    if hf["do_sample"]:
        hf.update(temperature=float(settings["temperature"]), top_k=int(settings["top_k"]),
                  top_p=float(settings["top_p"]))
    if "num_beams" in settings:
        hf["num_beams"] = int(settings["num_beams"])
    if settings.get("repetition_penalty", 1.0) != 1.0:
        hf["repetition_penalty"] = float(settings["repetition_penalty"])
    return {"decoding": decoding, "bos_token_id": bos_token_id, "eos_token_id": eos_token_id,
            "pad_token_id": pad_token_id, "decoder_start_token_id": bos_token_id, **hf}


#: the chat template a model records when its training sets none (``chat_template=``): each message as
#: a speaker line (its role in capitals: ``USER:``, ``ASSISTANT:``, ``SYSTEM:``) and its text, a blank
#: line after it, as in a play's script; the generation prompt is the assistant's speaker line. Jinja,
#: as transformers renders it (``trim_blocks``: a newline after a block tag is dropped).
DEFAULT_CHAT_TEMPLATE = ("{% for message in messages %}\n"
                         "{{ message['role'] | upper }}:\n{{ message['content'] }}\n\n"
                         "{% endfor %}\n"
                         "{% if add_generation_prompt %}\nASSISTANT:\n{% endif %}\n")


def tokenizer_config(tokenizer: TextTokenizer, special: Mapping[str, Any] | None = None,
                     chat_template: str | None = None) -> dict:
    """``tokenizer_config.json``: what ``transformers.AutoTokenizer`` needs next to ``tokenizer.json``.
    The end-of-text token (if the model has one) is the eos and pad token; without one the unknown
    token pads. The start-of-text token (a newline for character models) is ordinary text, not a
    special token: declaring it bos/pad would make transformers drop it when decoding. Padding is on
    the left, as generation needs (the adapter keeps the state unchanged over padding). ``chat_template``
    (Jinja; None: :data:`DEFAULT_CHAT_TEMPLATE`) is recorded where transformers' ``apply_chat_template``
    and ``lstm-pipeline serve``'s chat completions read it."""
    special = dict(special or {})
    out = {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": tokenizer.unk_token,
           "model_max_length": 1_000_000_000, "padding_side": "left",
           "clean_up_tokenization_spaces": False, "add_bos_token": False,
           "chat_template": chat_template or DEFAULT_CHAT_TEMPLATE}
    if special.get("eos_token"):
        out["eos_token"] = special["eos_token"]
    if special.get("pad_token"):
        out["pad_token"] = special["pad_token"]
    return out


#: config.json keys that save_pretrained writes itself (the rest come from ``extra``)
_OWN_CONFIG_KEYS = ("format", "format_version", "architecture", "vocab_size", "model", "model_type",
                    "architectures", "tie_word_embeddings")


def save_pretrained(model: RecurrentLM, model_cfg: Mapping[str, Any], tokenizer: TextTokenizer,
                    out_dir: str | Path, extra: Mapping[str, Any] | None = None,
                    model_card: bool = True, sample: CardSample | None = None) -> Path:
    """Write the model directory atomically. ``extra`` adds keys to ``config.json`` (``metrics``, ``data``,
    ``tokenizer``, ``bos_token_id``, ``decoding``, ``sample`` are used by the model card; ``chat_template``
    goes to tokenizer_config.json). ``sample(model, tokenizer, config, decoding) -> (prompt, text)`` writes
    the card's sample (:func:`lstm_pipeline.generation.pretrained.card_sample`); without it the card has none."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)  # .model.tmp-<pid>-* of an export that was killed
    # a sibling made with the user's umask (tempfile.mkdtemp would make it 0700: unreadable to the group)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        _write_model_files(tmp, model, model_cfg, tokenizer, dict(extra or {}), model_card, sample, str(out_dir))
        _swap_into_place(tmp, out_dir)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        converted = as_storage_error(exc, out_dir)  # a full disk: one line, the old model kept
        if converted is not exc:
            raise converted from None
        raise
    return out_dir


def _write_model_files(tmp: Path, model: RecurrentLM, model_cfg: Mapping[str, Any], tokenizer: TextTokenizer,
                       extra: dict, model_card: bool, sample: CardSample | None, name: str) -> None:
    """The files of a model directory (:data:`MODEL_FILES`) in directory ``tmp``, each with the umask's mode."""
    chat_template = extra.pop("chat_template", None)  # tokenizer_config.json's, as transformers keeps it
    special = special_tokens(tokenizer, extra.pop("eos_token", None),
                             extra.get("bos_token_id"))
    extra.update(bos_token_id=special["bos_token_id"], eos_token=special["eos_token"],
                 eos_token_id=special["eos_token_id"], pad_token_id=special["pad_token_id"])
    decoding = extra.pop("decoding", None)
    if not decoding and (extra.get("sample") or {}).get("temperature"):
        decoding = {"name": "sample", "temperature": float(extra["sample"]["temperature"])}
    decoding = decoding or DEFAULT_DECODING
    config = {  # the keys save_pretrained itself sets are _OWN_CONFIG_KEYS
        "format": "lstm-pipeline",
        "format_version": FORMAT_VERSION,
        "architecture": "RecurrentLM",
        "vocab_size": model.vocab_size,
        # every setting, defaults included: a later change of a default never changes this model
        "model": {**dict(model_cfg), **getattr(model, "config", {})},
        **extra,
        # what transformers needs (the adapter in lstm_pipeline.hf_adapter reads our keys above)
        "model_type": HF_MODEL_TYPE,
        "architectures": [HF_ARCHITECTURE],
        "tie_word_embeddings": bool(model_cfg.get("tie_weights", False)),
    }
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str, allow_nan=False))
    save_model(model, str(tmp / "model.safetensors"))  # handles tied weights
    tokenizer.save(tmp / "tokenizer.json")
    (tmp / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(tokenizer, special, chat_template),
                                                                indent=2))
    max_new = int((extra.get("sample") or {}).get("max_new_tokens", 200) or 200)
    (tmp / "generation_config.json").write_text(json.dumps(
        generation_config(decoding, special["bos_token_id"], special["eos_token_id"], max_new_tokens=max_new,
                          pad_token_id=special["pad_token_id"]), indent=2))
    if model_card:
        write_model_card(tmp, model, tokenizer, config, sample, name=name)
    mode = file_mode()  # safetensors writes 0600: every file gets the user's umask, like any other file
    for f in tmp.iterdir():
        os.chmod(f, mode)


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by the complete directory ``tmp``; the old one (if any) is removed only after."""
    if out_dir.exists() and _exchange(tmp, out_dir):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old model
        return
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def resolve_model_dir(path: str | Path, setting: str = "run") -> Path:
    """Accept a run directory (``<run>/model``) or a model directory itself. Raises
    :class:`ModelDirError` saying which it is not: a path that does not exist, a file, a run directory
    whose training never exported a model, a directory without ``config.json``, or a model directory
    missing ``model.safetensors``. ``setting`` names the option in the message (``run``)."""
    path = Path(path).expanduser()
    given = f"{setting}={path}"
    if not path.exists():
        raise ModelDirError(f"{given} does not exist. Pass {setting}=<a run directory written by 'lstm-pipeline train'> "
                            f"or its model/ directory.")
    if not path.is_dir():
        raise ModelDirError(f"{given} is a file, not a run or model directory. Pass {setting}=<a run directory written "
                            f"by 'lstm-pipeline train'> or its model/ directory (the one holding config.json).")
    for candidate in (path, path / MODEL_DIRNAME):
        if (candidate / "config.json").is_file() and (candidate / "model.safetensors").is_file():
            return candidate
    for candidate in (path, path / MODEL_DIRNAME):
        if (candidate / "config.json").is_file():
            raise ModelDirError(f"{given}: {candidate} has config.json but no model.safetensors: the model directory is "
                                f"incomplete. Export it again (a run exports its model when training finishes; "
                                f"from Python, save_pretrained).")
    if (path / "checkpoints").is_dir() or (path / ".hydra").is_dir():
        raise ModelDirError(
            f"{given} is a run directory without an exported model (no {path / MODEL_DIRNAME / 'config.json'}): its "
            f"training has not finished. Resume it with 'lstm-pipeline train ckpt_path={path}'; the model is exported "
            f"when training finishes.")
    raise ModelDirError(
        f"{given} is a directory but not a model directory: it holds no config.json (nor {MODEL_DIRNAME}/config.json), "
        f"so it holds no exported model. Pass {setting}=<a run directory written by 'lstm-pipeline train'> or its "
        f"model/ directory.")


def load_pretrained(path: str | Path, map_location: str | torch.device = "cpu", action: str = "load"
                    ) -> tuple[RecurrentLM, TextTokenizer, dict]:
    """``(model, tokenizer, config)`` of a run or model directory, after every check: the files
    (``config.checks.check_model_dir``: JSON, tokenizer, safetensors header, names and shapes) and the
    loaded model (:func:`.integrity.check_loaded_model`: finite weights, its own tokenizer). ``action``
    names what a refusal refuses (``load``, ``push``). Raises :class:`ModelDirError`, ``ConfigError`` or
    :class:`.integrity.ModelIntegrityError` (one line each)."""
    from ..config.checks import check_model_dir

    model_dir = resolve_model_dir(path)
    config, tk = check_model_dir(model_dir, map_location)  # damaged files: one clear line; each file read once
    if config.get("format") != "lstm-pipeline":
        raise ModelDirError(f"{model_dir / 'config.json'} is not an lstm-pipeline model config.")
    model = RecurrentLM(config["vocab_size"], **config["model"])
    load_model(model, str(model_dir / "model.safetensors"), device=str(map_location))
    model.eval()
    tokenizer = TextTokenizer(tk) if tk is not None else TextTokenizer.load(model_dir / "tokenizer.json")
    check_loaded_model(model, tokenizer, model_dir, action)  # finite weights, the model's own tokenizer
    return model, tokenizer, config
