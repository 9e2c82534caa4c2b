"""lstm-pipeline: recurrent language models. ``lstm_pipeline.from_pretrained(path_or_repo_id)``
loads an exported model (a local directory or a Hugging Face Hub repo)."""


def __getattr__(name):  # lazy: importing the package stays cheap
    if name == "from_pretrained":
        from .generation.pretrained import from_pretrained

        return from_pretrained
    if name == "push_to_hub":
        from .artifacts.hub import push_to_hub

        return push_to_hub
    raise AttributeError(f"module 'lstm_pipeline' has no attribute {name!r}")
