"""One module per ``lstm-pipeline`` command; each has ``run(cfg)`` (``plugins``: ``run(args)``)."""
