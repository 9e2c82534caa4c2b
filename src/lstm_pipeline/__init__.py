"""lstm-pipeline: recurrent language models. ``lstm_pipeline.from_pretrained(path_or_repo_id)``
loads an exported model (a local directory or a Hugging Face Hub repo)."""


def __getattr__(name):  # lazy: importing the package stays cheap
    if name in ("from_pretrained", "push_to_hub"):
        from . import hub

        return getattr(hub, name)
    raise AttributeError(f"module 'lstm_pipeline' has no attribute {name!r}")
