"""``lstm-pipeline serve run=<run>``: the OpenAI-compatible completions API with continuous batching,
and a page to try the model."""
from __future__ import annotations

import json

from ..extras import requires
from ..serve.app import Server, model_name_of
from ..serve.chat import ChatTemplate


def run(cfg):
    """Load ``cfg.run``'s model once, then serve until Ctrl-C."""
    uvicorn = requires("serve", "uvicorn")

    from ..artifacts.hub import resolve_pretrained
    from ..config.schema import to_dict
    from ..generation.generator import model_default_decoding
    from ..tokenization.base import TextTokenizer

    run = str(cfg.run)
    model_dir = resolve_pretrained(run)  # a Hub id is downloaded (or found in the cache) once, here
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("format") != "lstm-pipeline":
        raise ValueError(f"{model_dir / 'config.json'} is not an lstm-pipeline model config.")
    tokenizer = TextTokenizer.load(model_dir / "tokenizer.json")
    model = None
    if not cfg.engine_process:  # the engine in a thread of this process (slower under load: one GIL)
        from ..artifacts.model_dir import load_pretrained

        model = load_pretrained(model_dir, map_location=cfg.device)[0]
    server = Server(model, tokenizer, config, model_name=cfg.model_name or model_name_of(run),
                    # as generate: the model's own decoding unless decoding=<strategy> (settings without a name adjust it)
                    decoding=model_default_decoding(model_dir, to_dict(cfg.decoding)), api_key=cfg.api_key,
                    max_batch=cfg.max_batch,
                    max_prompt_tokens=cfg.max_prompt_tokens, max_tokens=cfg.max_tokens,
                    default_max_tokens=cfg.default_max_tokens, max_n=cfg.max_n, max_streams=cfg.max_streams,
                    eos_token=cfg.eos_token, on_unknown=cfg.on_unknown,
                    model_dir=str(model_dir) if cfg.engine_process else None, device=cfg.device,
                    stream_interval_ms=cfg.stream_interval_ms, host=str(cfg.host),
                    cors_origins=[str(o) for o in cfg.cors_origins or []],
                    chat_template=ChatTemplate.of_model_dir(model_dir))  # the default when it records none
    if cfg.engine_process:
        server.engine.start()  # loads the model in the engine process; a bad model directory fails here
    host = str(cfg.host)
    if host not in ("127.0.0.1", "localhost", "::1") and not server.api_key:
        print(f"lstm-pipeline serve: warning: listening on {host} with no api_key: anyone who can reach this "
              f"machine can use the model. Set LSTM_PIPELINE_API_KEY (or api_key=).", flush=True)
    print(f"lstm-pipeline serve: model '{server.model_name}' at http://{host}:{cfg.port}/ "
          f"(API: /v1/completions, /v1/chat/completions, max_batch={cfg.max_batch})", flush=True)
    try:
        uvicorn.run(server.app(), host=host, port=int(cfg.port), log_level=str(cfg.log_level),
                    timeout_graceful_shutdown=3)
    finally:
        server.engine.stop()
