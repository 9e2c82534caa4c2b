"""``lstm-pipeline push run=... repo_id=... [license=...] [language=...] [datasets=...] [dry_run=true]``:
upload a run's model directory to the Hugging Face Hub, its model card refreshed for the repo (its
id in "How to load" and ``model-index``, the run's ``eval.json`` metrics, the card settings)."""
from __future__ import annotations

from pathlib import Path

from ..artifacts.hub import push_operations, push_to_hub
from ..network import network_error_details, network_errors


def run(cfg) -> list:
    """Push ``cfg.run``'s model directory to ``cfg.repo_id``; returns the upload operations."""
    card = {k: cfg.get(k) for k in ("license", "language", "datasets")}
    try:
        result = push_to_hub(cfg.run, cfg.repo_id, revision=cfg.revision, private=cfg.private,
                             commit_message=cfg.commit_message, create_pr=cfg.create_pr, dry_run=cfg.dry_run,
                             **card)
    except Exception as exc:
        # any connection failure: OfflineModeIsEnabled, and the HTTP client's own errors (httpx's
        # ConnectError for a refused connection or a failed DNS lookup, timeouts), which are no
        # ConnectionError; anything else (a 401, a bad repo_id) stays what it is
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):  # reached the Hub, which refused: a token or a permission is missing
            raise ValueError(
                f"The Hugging Face Hub refused to write to {cfg.repo_id!r} (HTTP {status}). Log in with "
                f"'hf auth login' or set HF_TOKEN to a token with write access to it (for an organisation's "
                f"repo, one that is a member with write rights); dry_run=true lists what would be sent.") from exc
        if not network_errors(exc):
            raise
        raise ValueError(f"Could not reach the Hugging Face Hub ({network_error_details(exc)}). Check the network, "
                         f"unset HF_HUB_OFFLINE, log in with 'hf auth login' (or set HF_TOKEN); "
                         f"dry_run=true lists what would be sent.") from exc
    ops = result if cfg.dry_run else push_operations(cfg.run, cfg.repo_id, **card)
    verb = "Would upload" if cfg.dry_run else "Uploaded"
    from huggingface_hub import constants

    print(f"{verb} {len(ops)} files to {constants.ENDPOINT.rstrip('/')}/{cfg.repo_id}:")  # HF_ENDPOINT if set
    for op in ops:
        size = len(op.path_or_fileobj) if isinstance(op.path_or_fileobj, bytes) else Path(op.path_or_fileobj).stat().st_size
        print(f"  {op.path_in_repo:<24} {size:>12,} bytes")
    if not cfg.dry_run:
        print(getattr(result, "commit_url", result))
    return ops
