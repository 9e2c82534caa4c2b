"""The Hugging Face Hub: a repo id resolved to a local model directory (``snapshot_download``:
revisions, the local cache and ``HF_HUB_OFFLINE`` work as everywhere on the Hub), and a model
directory uploaded in one commit."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..tokenization.base import TextTokenizer
from .card import refresh_model_card
from .model_dir import MODEL_FILES, ModelDirError, load_pretrained, resolve_model_dir


class RepoIdError(ValueError):
    """A Hub repo id that the Hub would refuse (``huggingface_hub``'s own validation)."""


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` when the Hub accepts it as a model repo id ('name' or 'org/name': letters, digits,
    '-', '_', '.', no '..' or '--', at most 96 characters), by ``huggingface_hub.utils.validate_repo_id``.
    Raises :class:`RepoIdError` saying what is wrong and what to use."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        if not isinstance(repo_id, str):
            raise HFValidationError(f"it is a {type(repo_id).__name__}, not text")
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "not a valid repo id"
        raise RepoIdError(f"repo_id={repo_id!r} is not a Hub repo id ({reason.rstrip('.')}). Use 'name' or "
                          f"'org/name' with letters, digits, '-', '_' or '.'.") from None
    return repo_id


def _looks_local(name: str) -> bool:
    return os.path.exists(os.path.expanduser(name)) or name.startswith((".", "/", "~")) or name.count("/") > 1


def resolve_pretrained(path_or_repo_id: str | Path, revision: str | None = None, cache_dir: str | None = None,
                       local_files_only: bool | None = None, token: str | bool | None = None) -> Path:
    """A local run/model directory as is; anything else is a Hub repo id, fetched (or found in the
    local cache) with ``huggingface_hub.snapshot_download``."""
    name = str(path_or_repo_id)
    if _looks_local(name):
        return resolve_model_dir(name)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = snapshot_download(name, revision=revision, cache_dir=cache_dir, token=token,
                                     local_files_only=bool(local_files_only), allow_patterns=list(MODEL_FILES))
    except LocalEntryNotFoundError as exc:
        raise ModelDirError(
            f"'{name}' is not a local directory and revision {revision or 'main'} of the Hub repo '{name}' is not in "
            f"the local cache ({cache_dir or os.environ.get('HF_HUB_CACHE', 'the default HF cache')}), and the Hub "
            f"could not be reached (HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}). Check the name, "
            f"download it once while online, or pass a local path.") from exc
    return resolve_model_dir(snapshot)


def eval_report_of(model_dir: Path) -> dict | None:
    """The ``evaluate`` report (``eval.json``) of the run that holds ``model_dir`` (``<run>/model``),
    or None. A report of an earlier export was moved to ``stale/`` when the weights changed."""
    path = Path(model_dir).parent / "eval.json"
    return json.loads(path.read_text()) if Path(model_dir).name == "model" and path.is_file() else None


def hub_card(model_dir: str | Path, repo_id: str, **card_settings: Any):
    """The model card as uploaded to ``repo_id`` (:func:`~.card.refresh_model_card`): "How to load" and
    ``model-index`` name the repo, the metrics include the run's ``eval.json``; ``card_settings``
    (license, language, datasets) set the metadata. The local README.md is left as it is."""
    model_dir = resolve_model_dir(model_dir)
    tokenizer = TextTokenizer.load(model_dir / "tokenizer.json")
    return refresh_model_card(model_dir, tokenizer, repo_id, eval_report_of(model_dir), **card_settings)


def push_operations(model_dir: str | Path, repo_id: str | None = None, **card_settings: Any) -> list:
    """The ``CommitOperationAdd`` list a push sends: every model file, by its name in the repo; with
    ``repo_id``, README.md is the card refreshed for that repo (:func:`hub_card`)."""
    from huggingface_hub import CommitOperationAdd

    model_dir = resolve_model_dir(model_dir)
    missing = [f for f in ("config.json", "model.safetensors", "tokenizer.json") if not (model_dir / f).is_file()]
    if missing:
        raise ModelDirError(f"{model_dir} lacks {', '.join(missing)}; re-export it with save_pretrained.")
    card = str(hub_card(model_dir, repo_id, **card_settings)).encode() if repo_id else None
    return [CommitOperationAdd(path_in_repo=f, path_or_fileobj=card if f == "README.md" and card
                               else str(model_dir / f))
            for f in MODEL_FILES if (model_dir / f).is_file() or (f == "README.md" and card)]


def push_to_hub(model_dir: str | Path, repo_id: str, revision: str | None = None, private: bool | None = None,
                token: str | bool | None = None, commit_message: str | None = None, create_pr: bool = False,
                dry_run: bool = False, **card_settings: Any):
    """Upload a model directory (or a run's model/) to the Hub repo ``repo_id`` in one commit, its
    model card refreshed for that repo (``card_settings``: ``license``, ``language``, ``datasets``).
    ``dry_run=True`` returns the operations without touching the network. Before anything is sent (dry
    run or not) the repo id is validated (:func:`check_repo_id`) and the directory gets every check that
    loading runs (:func:`.model_dir.load_pretrained`): a model that ``load`` would refuse is not pushed.
    Raises :class:`RepoIdError`, ``ModelDirError``, ``ConfigError`` or ``ModelIntegrityError``."""
    check_repo_id(repo_id)
    # what loading would refuse is never uploaded: the same checks (damaged files, NaN weights, a foreign tokenizer)
    load_pretrained(model_dir, action="push")
    operations = push_operations(model_dir, repo_id, **card_settings)
    if dry_run:
        return operations
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    return api.create_commit(repo_id, operations=operations, revision=revision, create_pr=create_pr,
                             commit_message=commit_message or "Upload lstm-pipeline model")
