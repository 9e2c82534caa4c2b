"""``lstm-pipeline serve``: an OpenAI-compatible completions API over one model, continuously batched.

Endpoints: ``POST /v1/completions`` (OpenAI's shape, plus the project's decoding settings; ``echo``
with prompt logprobs for scoring), ``POST /v1/chat/completions`` (messages rendered with the model's
chat template, :mod:`.chat`, then answered as a completion of that text), ``GET /v1/models`` and
``/v1/models/{id}``, ``POST /tokenize``, ``POST /detokenize`` and ``GET /tokenizer_info`` (vLLM's
shapes), ``GET /health``, ``GET /metrics`` (Prometheus text format) and ``GET /`` (a page to try the
model). The model is fixed when the server starts; no request can name a file.

Errors are OpenAI-shaped: ``{"error": {"message", "type", "param", "code"}}`` with a 4xx status.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional, Union
from urllib.parse import urlsplit

import torch

from ..extras import MissingExtraError, requires
from ..generation.processors import OFF
from ..generation.strategies import COMMON, SAMPLING, StepDecoding
from .batcher import Engine, Group, request_rows
from .chat import ChatError, ChatTemplate
from .sampling import token_text


MissingDependencyError = MissingExtraError  # the web stack is not installed (one line from the CLI)

for _module in ("fastapi", "prometheus_client"):
    requires("serve", _module)
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse  # noqa: E402
from pydantic import BaseModel, ConfigDict  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

#: the names a loopback-bound server answers to (the Host header's host; DNS-rebinding protection)
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

#: the project's decoding settings a request may set (besides OpenAI's temperature and top_p)
DECODING_FIELDS = tuple(k for k in (*SAMPLING, *COMMON))


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.param, self.code, self.type)


def error_response(status: int, message: str, param=None, code=None, type="invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type, "param": param, "code": code}}, status_code=status)


class RequestFields(BaseModel):
    """The fields a completion and a chat request share: OpenAI's, then the project's own decoding
    settings (docs/generation.md). Unknown fields are an error (a misspelled setting would otherwise
    be ignored silently)."""
    model_config = ConfigDict(extra="forbid")

    model: Optional[str] = None
    max_tokens: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    n: int = 1
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = None
    stream: bool = False
    stream_options: Optional[dict] = None  # {"include_usage": true}
    user: Optional[str] = None  # accepted and ignored, as OpenAI clients may send it
    decoding: Optional[str] = None
    top_k: Optional[int] = None
    min_p: Optional[float] = None
    typical_p: Optional[float] = None
    epsilon: Optional[float] = None
    eta: Optional[float] = None
    repetition_penalty: Optional[float] = None
    frequency_penalty: Optional[float] = None
    presence_penalty: Optional[float] = None
    no_repeat_ngram_size: Optional[int] = None
    bad_words_ids: Optional[list[list[int]]] = None
    min_new_tokens: Optional[int] = None
    forced_end: Optional[bool] = None


class CompletionRequest(RequestFields):
    """The body of ``POST /v1/completions`` (:class:`RequestFields` and these)."""

    prompt: Union[str, list[str], list[int], list[list[int]]] = ""
    logprobs: Optional[int] = None
    logit_bias: Optional[dict[str, float]] = None  # {token id: bias in [-100, 100]}, OpenAI's
    echo: bool = False  # the prompt comes back before the completion (with its logprobs when logprobs is set)


class Metrics:
    """Prometheus metrics (``prometheus_client``, one registry per app)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.requests = Counter("lstm_pipeline_requests", "HTTP requests by path and status", ["path", "status"], registry=r)
        self.prompt_tokens = Counter("lstm_pipeline_prompt_tokens", "prompt tokens prefilled", registry=r)
        self.generated = Counter("lstm_pipeline_generated_tokens", "tokens generated", registry=r)
        self.rows = Gauge("lstm_pipeline_batch_rows", "rows in the running batch at the last step", registry=r)
        self.occupancy = Gauge("lstm_pipeline_batch_occupancy", "rows in the running batch / max_batch", registry=r)
        self.queued = Gauge("lstm_pipeline_queued_rows", "rows waiting for a place in the batch", registry=r)
        self.step_seconds = Histogram("lstm_pipeline_step_seconds", "time of one batch step",
                                      buckets=(.001, .0025, .005, .01, .02, .04, .08, .16, .32, 1), registry=r)
        self.ttft = Histogram("lstm_pipeline_time_to_first_token_seconds", "request received -> first token chosen",
                              buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10), registry=r)
        self.latency = Histogram("lstm_pipeline_request_seconds", "request received -> last token",
                                 buckets=(.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120), registry=r)

    # called from the engine thread
    def step(self, rows: int, tokens: int, seconds: float, max_batch: int) -> None:
        self.rows.set(rows)
        self.occupancy.set(rows / max_batch)
        self.generated.inc(tokens)
        self.step_seconds.observe(seconds)

    def first_token(self, seconds: float) -> None:
        self.ttft.observe(seconds)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _Guard:
    """Pure ASGI middleware: the API key (``/v1/*`` and ``/metrics``), the body-size limit, and the
    request counter by path and status. (Starlette's ``@app.middleware("http")`` would pass every
    chunk of every stream through an extra task and memory stream: measured, a third of the web
    process's time under 64 streams.)"""

    PATHS = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics", "/", "/tokenize",
             "/detokenize", "/tokenizer_info")

    def __init__(self, app, server: "Server"):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        server = self.server
        path = scope["path"]
        headers = dict(scope["headers"])
        label = path if path in self.PATHS else "other"
        refused = self._refused_host(headers)
        if refused is not None:
            server.metrics.requests.labels(label, "421").inc()
            return await refused(scope, receive, send)
        protected = path.startswith("/v1") or path in ("/metrics", "/tokenize", "/detokenize", "/tokenizer_info")
        if protected and server.api_key is not None:
            scheme, _, key = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(key.strip().encode(), server.api_key.encode()):
                server.metrics.requests.labels(label, "401").inc()
                return await error_response(401, "Incorrect or missing API key: send it as 'Authorization: Bearer <key>'.",
                                            None, "invalid_api_key")(scope, receive, send)
        size = headers.get(b"content-length", b"").decode("latin-1")
        if size.isdigit() and int(size) > server.limits["max_body_bytes"]:
            return await self._too_large()(scope, receive, send)
        if not size and scope["method"] in ("POST", "PUT", "PATCH"):  # chunked: counted as it arrives
            receive = await self._buffered(receive)
            if receive is None:
                server.metrics.requests.labels(label, "413").inc()
                return await self._too_large()(scope, _disconnected, send)
        counted = False

        async def counting_send(message):
            nonlocal counted
            if not counted and message["type"] == "http.response.start":
                counted = True
                server.metrics.requests.labels(label, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)

    def _too_large(self) -> JSONResponse:
        return error_response(413, f"the request body is larger than {self.server.limits['max_body_bytes']} bytes.")

    def _refused_host(self, headers: dict):
        """A 421 response when the server is bound to loopback and the ``Host`` header names another
        host (DNS rebinding), else None."""
        allowed = self.server.allowed_hosts
        if allowed is None:
            return None
        host = headers.get(b"host", b"").decode("latin-1")
        name = urlsplit("//" + host).hostname if host else None
        if name in allowed:
            return None
        return error_response(421, f"this server answers to {', '.join(sorted(allowed))} only, not Host {host!r} "
                                   f"(DNS-rebinding protection of a loopback server).", None, "invalid_host")

    async def _buffered(self, receive):
        """The whole body of a request without Content-Length (chunked), read up to the size limit:
        a ``receive`` that gives it again and then passes on (the disconnect), or None when it is
        larger than the limit."""
        limit, chunks, size = self.server.limits["max_body_bytes"], [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            size += len(message.get("body", b""))
            if size > limit:
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay():
            return pending.pop() if pending else await receive()

        return replay


async def _disconnected():
    return {"type": "http.disconnect"}


class Server:
    """The model, the engine and the limits; builds the FastAPI app (:meth:`app`)."""

    def __init__(self, model, tokenizer, config: dict, *, model_name: str, decoding: dict,
                 api_key: str | None = None, max_batch: int = 64, max_prompt_tokens: int = 4096,
                 max_tokens: int = 2048, default_max_tokens: int = 16, max_n: int = 16, max_streams: int = 256,
                 max_logprobs: int = 5, eos_token: str | None = None, on_unknown: str = "error",
                 max_body_bytes: int = 1_000_000, model_dir: str | None = None, device: str = "cpu",
                 stream_interval_ms: float = 0, chat_template: ChatTemplate | None = None,
                 host: str | None = None, cors_origins: list[str] | None = None):
        """``model_dir`` given: the batching engine runs in a child process that loads the model
        from there (``lstm-pipeline serve`` does this; ``model`` may then be None). Otherwise it
        runs in a thread of this process over ``model``. ``stream_interval_ms``: a stream gets at
        most one server-sent event per this many milliseconds (the tokens chosen meanwhile go out in
        it together; a stream's first event is never held); 0 sends each step's tokens at once (a
        stream that fell behind still gets what is waiting as one event). ``chat_template``: how
        chat messages become a prompt (None: the built-in default, said in each chat answer's
        ``X-Chat-Template`` header). ``host``: the address the
        server is bound to; a loopback one (127.0.0.1, localhost, ::1) makes requests whose ``Host``
        header names another host a 421 (DNS rebinding: a web page on evil.com resolving its name to
        127.0.0.1 must not reach this server); None checks nothing. ``cors_origins``: the origins whose
        pages may call the API from a browser (none by default, ``["*"]`` any)."""
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.model_name, self.api_key = model_name, api_key or None
        self.decoding = dict(decoding)
        self.limits = dict(max_batch=max_batch, max_prompt_tokens=max_prompt_tokens, max_tokens=max_tokens,
                           default_max_tokens=default_max_tokens, max_n=max_n, max_streams=max_streams,
                           max_logprobs=max_logprobs, max_body_bytes=max_body_bytes)
        for k, v in self.limits.items():
            if not isinstance(v, int) or v < (0 if k == "max_logprobs" else 1):
                raise ValueError(f"{k} must be a positive int, got {v!r}")
        self.on_unknown = on_unknown
        self.chat_template = chat_template or ChatTemplate()
        self.allowed_hosts = LOOPBACK if host in LOOPBACK else None
        self.cors_origins = list(cors_origins or [])
        if not isinstance(stream_interval_ms, (int, float)) or not 0 <= stream_interval_ms <= 10_000:
            raise ValueError(f"stream_interval_ms must be a number of milliseconds in [0, 10000], got {stream_interval_ms!r}")
        self.stream_interval = stream_interval_ms / 1000
        from ..generation.generator import resolve_eos_token_id

        # null: the model's own end-of-text token (as generate); "none": no token ends a row
        eos_id = resolve_eos_token_id(tokenizer, config, eos_token)
        self._decoders: dict[str, StepDecoding] = {}
        self._settings_of: dict[int, dict] = {}  # id(decoder) -> the settings that built it
        try:  # bad server settings fail before serving, in one line
            self._build_decoder(self.decoding, "decoding")
        except APIError as exc:
            raise ValueError(f"decoding: {exc.message}") from None
        self.metrics = Metrics()
        engine_args = dict(max_batch=max_batch, bos_token_id=config.get("bos_token_id", 0), eos_token_id=eos_id,
                           metrics=self.metrics, deliver=self._deliver)
        if model_dir is not None:
            from .worker import EngineProcess

            self.engine = EngineProcess(model_dir, device, **engine_args)
        else:
            self.engine = Engine(model, tokenizer, **engine_args)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.created = int(time.time())
        self._seeds = torch.Generator()
        self._seeds.seed()

    def _deliver(self, batch) -> None:
        """Engine thread: one step's events for every group, handed to the event loop in one hop
        (one wake-up per step, not one per stream); never blocks the engine."""
        loop = self.loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._dispatch, batch)
        except RuntimeError:  # the event loop is closed (shutdown)
            for g, _ in batch:
                g.cancelled = True

    @staticmethod
    def _dispatch(batch) -> None:
        for g, events in batch:
            g.emit(g, events)

    # -- request -> group ------------------------------------------------------------------
    def _build_decoder(self, settings: dict, param: str | None) -> StepDecoding:
        """The strategy for ``settings``, built (and checked) once per distinct settings: building
        one looks its processors up in the registry, which reads the installed entry points."""
        from ..registry import DECODERS

        key = repr(sorted(settings.items(), key=lambda kv: kv[0]))
        decoder = self._decoders.get(key)
        if decoder is not None:
            return decoder
        try:
            decoder = DECODERS.build(settings)
        except (ValueError, LookupError, TypeError) as exc:
            raise APIError(400, str(exc), param) from None
        if not isinstance(decoder, StepDecoding):
            raise APIError(400, f"decoding '{settings.get('name')}' is not a token-by-token strategy and cannot run in "
                                f"a continuous batch; use greedy or a sampling strategy here, or lstm-pipeline generate "
                                f"for beam search and contrastive search.", param)
        if len(self._decoders) >= 512:
            self._settings_of.pop(id(self._decoders.pop(next(iter(self._decoders)))), None)
        self._decoders[key] = decoder
        self._settings_of[id(decoder)] = dict(settings)
        return decoder

    def decoder_for(self, body: CompletionRequest) -> StepDecoding:
        base = {"name": body.decoding} if body.decoding else dict(self.decoding)
        given = {k: getattr(body, k) for k in DECODING_FIELDS if getattr(body, k, None) is not None}
        if given.get("temperature") == 0:  # OpenAI's deterministic setting
            settings = {k: v for k, v in {**base, **given}.items() if k in COMMON}
            settings["name"] = "greedy"
        else:
            settings = {**base, **given}
            if settings.get("name") == "greedy":
                settings = _greedy_or_sample(settings, given)
        return self._build_decoder(settings, "decoding" if body.decoding else None)

    def encode_prompts(self, prompt) -> list[list[int]]:
        V = int(self.config["vocab_size"])
        limit = self.limits["max_prompt_tokens"]
        if isinstance(prompt, str):
            prompts: list = [prompt]
        elif prompt and all(isinstance(p, int) for p in prompt):
            prompts = [prompt]
        else:
            prompts = list(prompt)
        if not prompts:
            raise APIError(400, "prompt is an empty list: give a string, a list of strings or token ids.", "prompt")
        out = []
        for i, p in enumerate(prompts):
            if isinstance(p, str):
                if len(p) > 32 * limit:
                    raise APIError(400, f"prompt {i} is longer than this server accepts (max_prompt_tokens={limit}).",
                                   "prompt", "context_length_exceeded")
                try:
                    ids = self.tokenizer.encode_checked(p, on_unknown=self.on_unknown, what=f"prompt {i}")
                except ValueError as exc:
                    raise APIError(400, str(exc), "prompt") from None
            else:
                ids = list(p)
                bad = [t for t in ids if not 0 <= t < V]
                if bad:
                    raise APIError(400, f"prompt {i} holds token ids outside the vocabulary [0, {V}): {bad[:5]}", "prompt")
            if len(ids) > limit:
                raise APIError(400, f"prompt {i} has {len(ids)} tokens; this server accepts at most "
                                    f"max_prompt_tokens={limit}.", "prompt", "context_length_exceeded")
            out.append(ids)
        return out

    def logit_bias_of(self, given: dict | None) -> dict[int, float] | None:
        """OpenAI's ``logit_bias`` ({"token id": bias}) checked: ids in the vocabulary, biases in
        [-100, 100], at most 300 entries. Raises a 400 :class:`APIError` otherwise."""
        if not given:
            return None
        V = int(self.config["vocab_size"])
        if len(given) > 300:
            raise APIError(400, f"logit_bias has {len(given)} entries; at most 300.", "logit_bias")
        out = {}
        for key, value in given.items():
            if not str(key).isdigit() or not 0 <= int(key) < V:
                raise APIError(400, f"logit_bias key {key!r} is not a token id in [0, {V}) (POST /tokenize gives "
                                    f"the ids of a text).", "logit_bias")
            if not -100 <= value <= 100:
                raise APIError(400, f"logit_bias[{key}] = {value} is outside [-100, 100].", "logit_bias")
            out[int(key)] = float(value)
        return out

    def group_for(self, body: CompletionRequest, emit) -> tuple[Group, list[list[int]]]:
        L = self.limits
        if body.model is not None and body.model != self.model_name:
            raise APIError(404, f"The model '{body.model}' does not exist here; this server serves '{self.model_name}' "
                                f"(GET /v1/models).", "model", "model_not_found")
        max_tokens = L["default_max_tokens"] if body.max_tokens is None else body.max_tokens
        if not (0 if body.echo else 1) <= max_tokens <= L["max_tokens"]:
            raise APIError(400, f"max_tokens must be between 1 and {L['max_tokens']} on this server (0 with echo=true, "
                                f"to score the prompt only), got {max_tokens}.", "max_tokens")
        if not 1 <= body.n <= L["max_n"]:
            raise APIError(400, f"n must be between 1 and {L['max_n']} on this server, got {body.n}.", "n")
        if body.logprobs is not None and not 0 <= body.logprobs <= L["max_logprobs"]:
            raise APIError(400, f"logprobs must be between 0 and {L['max_logprobs']}, got {body.logprobs}.", "logprobs")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        if len(stop) > 4 or any(not s for s in stop):
            raise APIError(400, "stop must be up to 4 non-empty strings.", "stop")
        if body.seed is not None and not 0 <= body.seed < 2 ** 63:
            raise APIError(400, f"seed must be an int in [0, 2**63), got {body.seed}.", "seed")
        decoder = self.decoder_for(body)
        bias = self.logit_bias_of(body.logit_bias)
        prompts = self.encode_prompts(body.prompt)
        rows = request_rows(prompts, body.n)
        if len(rows) > L["max_batch"]:
            raise APIError(400, f"this request needs {len(rows)} rows (prompts x n); the batch holds max_batch="
                                f"{L['max_batch']}.", "n")
        busy = self.engine.active_rows + self.engine.queued_rows
        if busy + len(rows) > L["max_streams"]:
            raise APIError(429, f"the server is at its limit of {L['max_streams']} concurrent streams; retry shortly.",
                           None, "server_busy", "rate_limit_error")
        seed = int(body.seed) if body.seed is not None else int(torch.randint(0, 2 ** 62, (1,), generator=self._seeds))
        group = Group(rows, decoder, max_tokens, emit=emit, stop=stop, logprobs=body.logprobs, seed=seed,
                      settings=self._settings_of[id(decoder)], echo=body.echo, logit_bias=bias)
        self.metrics.prompt_tokens.inc(sum(len(r) for r in rows))
        return group, prompts

    # -- the app -----------------------------------------------------------------------
    def app(self) -> FastAPI:
        """The FastAPI app: the engine starts with it and stops with it; OpenAI-shaped errors; the
        routes of the module docstring."""
        app = FastAPI(title="lstm-pipeline serve", lifespan=_lifespan(self), docs_url=None, redoc_url=None,
                      openapi_url=None)
        _add_error_handlers(app)
        app.add_middleware(_Guard, server=self)
        if self.cors_origins:  # outermost: it answers browsers' preflight requests (no API key in those)
            from starlette.middleware.cors import CORSMiddleware

            app.add_middleware(CORSMiddleware, allow_origins=self.cors_origins, allow_methods=["GET", "POST"],
                               allow_headers=["*"])
        _add_routes(app, self)
        _add_tokenizer_routes(app, self)
        return app

    async def complete(self, body: CompletionRequest, request: Request):
        """``POST /v1/completions``: check the request and queue its rows, then answer it as a
        stream of server-sent events or as one JSON body. Raises :class:`APIError` (4xx) for a bad
        request, before anything is queued."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        call = _Completion(self, body)
        if body.stream:
            return call.streaming_response()
        return await call.gather(request)


def _greedy_or_sample(settings: dict, given: dict) -> dict:
    """A request to a greedy server (``settings``: the server's with the request's ``given`` on top),
    with OpenAI's meaning of its fields (TGI #687): a filter at its neutral value (``top_p: 1``,
    ``top_k: 0``, ...) is off, so it is dropped; a ``temperature`` above 0, or a filter that is on,
    means sampling (OpenAI samples at any temperature but 0)."""
    neutral = {k for k, v in given.items() if k in SAMPLING and k != "temperature" and v == OFF[k]}
    settings = {k: v for k, v in settings.items() if k not in neutral}
    if "temperature" in given or any(k in SAMPLING for k in given if k not in neutral):
        return {k: v for k, v in settings.items() if k == "name" or k in COMMON or k in given} | {"name": "sample"}
    return settings


def _lifespan(server: Server):
    """The app's lifespan: the event loop noted for the engine's deliveries, the engine started
    (a thread engine; the engine process is started before serving) and stopped at shutdown."""

    @asynccontextmanager
    async def lifespan(app):
        server.loop = asyncio.get_running_loop()
        if isinstance(server.engine, Engine):
            server.engine.start()
        yield
        server.engine.stop()

    return lifespan


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """(one-line message, the parameter at fault or None) for a body that does not fit
    :class:`CompletionRequest`."""
    err = exc.errors()[0] if exc.errors() else {}
    loc = [str(x) for x in err.get("loc", ()) if x != "body"]
    param = loc[0] if loc else None
    if err.get("type") == "extra_forbidden":
        msg = (f"unknown field '{param}'; accepted: OpenAI's completions fields and the decoding settings "
               f"in docs/serve.md.")
    elif err.get("type") == "json_invalid" or not loc:
        msg = f"the body is not a valid JSON completion request: {err.get('msg', exc)}"
    else:
        msg = f"{'.'.join(loc)}: {err.get('msg')}"
    return msg, param


def _add_error_handlers(app: FastAPI) -> None:
    """Every error the app returns is OpenAI-shaped: APIError as raised, a body that does not
    validate as a 400, Starlette's own HTTP errors (404, 405, ...) with their status."""

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        msg, param = _validation_message(exc)
        return error_response(400, msg, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        message = str(exc.detail)
        if exc.status_code == 404 and request.url.path.startswith("/v1/"):
            message = f"{request.url.path} is not served here; this server serves: {_routes_served(request.app)}."
        return error_response(exc.status_code, message, None, None,
                              "invalid_request_error" if exc.status_code < 500 else "server_error")


def _routes_served(app: FastAPI) -> str:
    """The app's routes, as "POST /v1/completions, GET /v1/models, ..." (for an unknown path's 404)."""
    return ", ".join(f"{'/'.join(sorted(getattr(r, 'methods', None) or ['GET']))} {r.path}"
                     for r in app.routes if getattr(r, "path", None))


def _add_routes(app: FastAPI, server: Server) -> None:
    """``GET /health``, ``/metrics``, ``/v1/models``, ``/`` and ``POST /v1/completions``."""

    @app.get("/health")
    async def health():
        if server.engine.error is not None:
            return JSONResponse({"status": "error", "error": repr(server.engine.error)}, status_code=500)
        return {"status": "ok", "model": server.model_name, "active_rows": server.engine.active_rows,
                "queued_rows": server.engine.queued_rows, "steps": server.engine.steps,
                "peak_rows": server.engine.peak_rows,
                "tokens": server.engine.tokens_generated}

    @app.get("/metrics")
    async def metrics():
        server.metrics.queued.set(server.engine.queued_rows)
        return PlainTextResponse(server.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": server.model_name, "object": "model", "created": server.created,
                                            "owned_by": "lstm-pipeline"}]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        if model_id != server.model_name:
            raise APIError(404, f"The model '{model_id}' does not exist here; this server serves "
                                f"'{server.model_name}' (GET /v1/models).", "model", "model_not_found")
        return {"id": server.model_name, "object": "model", "created": server.created, "owned_by": "lstm-pipeline"}

    @app.get("/", response_class=HTMLResponse)
    async def page():
        from .page import render_page

        return render_page(server)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        return await server.complete(body, request)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request):
        return await chat_complete(server, body, request)


class TokenizeRequest(BaseModel):
    """The body of ``POST /tokenize`` (vLLM's shape)."""
    model_config = ConfigDict(extra="ignore")

    model: Optional[str] = None
    prompt: str
    add_special_tokens: bool = False  # accepted; this tokenizer adds none


class DetokenizeRequest(BaseModel):
    """The body of ``POST /detokenize`` (vLLM's shape)."""
    model_config = ConfigDict(extra="ignore")

    model: Optional[str] = None
    tokens: list[int]


def _add_tokenizer_routes(app: FastAPI, server: Server) -> None:
    """vLLM's tokenizer endpoints, which lm-evaluation-harness's remote tokenizer reads:
    ``POST /tokenize`` ({prompt} -> {count, max_model_len, tokens}), ``POST /detokenize``
    ({tokens} -> {prompt}) and ``GET /tokenizer_info`` (the special tokens, as text)."""
    tokenizer = server.tokenizer

    def piece(token_id):
        return None if token_id is None else tokenizer.decode([int(token_id)])

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest):
        try:
            ids = tokenizer.encode_checked(body.prompt, on_unknown=server.on_unknown, what="prompt")
        except ValueError as exc:
            raise APIError(400, str(exc), "prompt") from None
        return {"count": len(ids), "max_model_len": server.limits["max_prompt_tokens"], "tokens": ids}

    @app.post("/detokenize")
    async def detokenize(body: DetokenizeRequest):
        V = int(server.config["vocab_size"])
        bad = [t for t in body.tokens if not 0 <= t < V]
        if bad:
            raise APIError(400, f"tokens outside the vocabulary [0, {V}): {bad[:5]}", "tokens")
        return {"prompt": tokenizer.decode(body.tokens)}

    @app.get("/tokenizer_info")
    async def tokenizer_info():
        cfg = server.config
        return {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": piece(cfg.get("bos_token_id")),
                "eos_token": piece(cfg.get("eos_token_id")), "pad_token": piece(cfg.get("pad_token_id")),
                "unk_token": tokenizer.unk_token, "model_max_length": server.limits["max_prompt_tokens"]}


_SERVER_FAILED = "the server failed while generating; see its log."
_GONE = object()  # in a request's inbox: its client disconnected


def _empty_logprobs() -> dict:
    """One choice's OpenAI logprobs object, no token yet."""
    return {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}


class _Completion:
    """One completion request in flight: its group queued on the engine, the events the engine
    sends for it (an asyncio queue, filled in the event loop by ``Server._deliver``), and the
    answer built from them (:meth:`streaming_response` or :meth:`gather`)."""

    def __init__(self, server: Server, body: CompletionRequest):
        """Checks ``body`` and queues its rows (raises :class:`APIError` when it is bad)."""
        self.server, self.body = server, body
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.group, prompts = server.group_for(body, self._emit)
        self.rid, self.created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        self.started = time.perf_counter()
        server.engine.submit(self.group)
        self.prompt_tokens = sum(len(p) for p in prompts)  # each prompt once, whatever n (OpenAI's count)
        self.n_rows = self.group.rows
        self.want_lp = body.logprobs is not None
        self.echo_text = _echo_texts(server.tokenizer, body, prompts) if body.echo else None
        self.completion_tokens = 0

    def _emit(self, group, events) -> None:
        """In the event loop (see ``Server._deliver``): one step's events for this request."""
        self.inbox.put_nowait(events)

    def chunk(self, choices: list, usage: dict | None = None) -> dict:
        """An OpenAI ``text_completion`` object holding ``choices`` (and ``usage`` when given)."""
        out = {"id": self.rid, "object": "text_completion", "created": self.created,
               "model": self.server.model_name, "choices": choices}
        if usage is not None:
            out["usage"] = usage
        return out

    def usage(self) -> dict:
        """Token counts so far: prompt (each prompt once), completion, total."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    def _add_logprob(self, lp: dict, ev, offset: int) -> None:
        """Append token event ``ev`` to logprobs object ``lp``; ``offset``: the characters of its
        row's text before this token."""
        lp["tokens"].append(token_text(self.server.tokenizer, ev.token_id))
        lp["token_logprobs"].append(ev.logprob)
        lp["top_logprobs"].append(ev.top_logprobs or {})
        lp["text_offset"].append(offset)

    def _add_prompt(self, lp: dict | None, ev) -> str:
        """A row's echoed prompt (its first event, ``ev.prompt``): its logprobs entries appended to
        ``lp`` (the first token's logprob and top_logprobs are None, as OpenAI's); returns its text."""
        if lp is not None:
            offset = 0
            for tid, logprob, top in ev.prompt:
                name = token_text(self.server.tokenizer, tid)
                lp["tokens"].append(name)
                lp["token_logprobs"].append(logprob)
                lp["top_logprobs"].append(top)
                lp["text_offset"].append(offset)
                offset += len(name)
        return self.echo_text[ev.index // self.body.n]

    # -- streaming ------------------------------------------------------------------------
    def streaming_response(self) -> StreamingResponse:
        """The answer as server-sent events (see :meth:`events`)."""
        return StreamingResponse(self.events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def events(self):
        """Yields the server-sent events: one per batch of steps (throttled to the server's
        stream interval), an error event if the engine failed, the usage if asked, ``[DONE]``.
        A client that goes away takes its rows out of the batch."""
        # every event starts the same: "data: {id, object, created, model, "choices": "
        self._head = "data: " + json.dumps(self.chunk([]), ensure_ascii=False)[:-3]
        self._offsets = [0] * self.n_rows
        self._left, self._sent_at, done = self.n_rows, None, False
        try:
            while self._left > 0:
                rows, failed = self._fold(await self._next_steps())
                if failed:
                    self._left = 0
                    yield "data: " + json.dumps({"error": {"message": _SERVER_FAILED, "type": "server_error",
                                                           "param": None, "code": None}}) + "\n\n"
                    break
                event = self._event_of(rows)
                if event is not None:
                    yield event
            done = True
            self.server.metrics.latency.observe(time.perf_counter() - self.started)
            if (self.body.stream_options or {}).get("include_usage"):
                yield "data: " + json.dumps(self.chunk([], self.usage())) + "\n\n"
            yield "data: [DONE]\n\n"
        finally:
            if not done:  # the client went away: leave the batch now
                self.server.engine.cancel(self.group)

    async def _next_steps(self) -> list:
        """The next step's events, after waiting out the stream interval since the last event
        (a stream's first event is never held), plus every step waiting behind it (a client that
        fell behind gets them as one event)."""
        steps = [await self.inbox.get()]
        interval, loop = self.server.stream_interval, asyncio.get_running_loop()
        if interval and self._sent_at is not None:  # at most one event per interval
            wait = self._sent_at + interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        self._sent_at = loop.time()
        while not self.inbox.empty():
            steps.append(self.inbox.get_nowait())
        return steps

    def _fold(self, steps: list) -> tuple[dict[int, list], bool]:
        """Per row in ``steps``: [text pieces, logprobs object or None, finish reason]; counts the
        tokens and the rows that finished. Also True when the engine reported an error."""
        rows: dict[int, list] = {}
        for events in steps:
            for ev in events:
                if ev.finish_reason == "error":
                    return rows, True
                row = rows.get(ev.index)
                if row is None:
                    row = rows[ev.index] = [[], _empty_logprobs() if self.want_lp else None, None]
                if ev.prompt is not None:
                    text = self._add_prompt(row[1], ev)
                    row[0].append(text)
                    self._offsets[ev.index] += len(text)
                if ev.token_id is not None:
                    self.completion_tokens += 1
                    if self.want_lp:
                        self._add_logprob(row[1], ev, self._offsets[ev.index])
                row[0].append(ev.text)
                self._offsets[ev.index] += len(ev.text)
                if ev.finish_reason:
                    row[2] = ev.finish_reason
                    self._left -= 1
        return rows, False

    def _event_of(self, rows: dict[int, list]) -> str | None:
        """The server-sent event for folded ``rows``, or None when there is nothing to say."""
        if len(rows) == 1 and not self.want_lp:  # the common case, formatted fast
            (index, (pieces, _, finish)), = rows.items()
            text = "".join(pieces)
            if not (text or finish):
                return None
            return (f"{self._head}[{{\"text\": {json.dumps(text, ensure_ascii=False)}, \"index\": {index}, "
                    f"\"logprobs\": null, \"finish_reason\": {json.dumps(finish)}}}]}}\n\n")
        choices = []
        for index, (pieces, lp, finish) in rows.items():
            text = "".join(pieces)
            if text or finish or (lp is not None and lp["tokens"]):
                choices.append({"text": text, "index": index, "logprobs": lp, "finish_reason": finish})
        if not choices:
            return None
        return "data: " + json.dumps(self.chunk(choices), ensure_ascii=False) + "\n\n"

    # -- one body ---------------------------------------------------------------------------
    async def gather(self, request: Request):
        """The answer as one ``text_completion`` body, once every row finished. A client that
        disconnects gets its rows out of the batch before the engine's next step (a task waits on the
        connection's disconnect message; vLLM #9428) and a bare 499; raises a 500
        :class:`APIError` if the engine failed."""
        texts, finish = [""] * self.n_rows, [None] * self.n_rows
        lps = [_empty_logprobs() for _ in range(self.n_rows)]
        left = self.n_rows
        watcher = asyncio.ensure_future(self._watch(request))
        try:
            while left > 0:
                events = await self.inbox.get()
                if events is _GONE:
                    return JSONResponse({}, status_code=499)
                left -= self._take(events, texts, finish, lps)
        except asyncio.CancelledError:
            self.server.engine.cancel(self.group)
            raise
        finally:
            watcher.cancel()
        self.server.metrics.latency.observe(time.perf_counter() - self.started)
        choices = [{"text": t, "index": i, "logprobs": lps[i] if self.want_lp else None,
                    "finish_reason": f} for i, (t, f) in enumerate(zip(texts, finish))]
        return self.chunk(choices, self.usage())

    async def _watch(self, request: Request) -> None:
        """Until cancelled: on the client's disconnect (the body is read, so the next ASGI message is
        that one), cancel the group at once and wake :meth:`gather`."""
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                self.server.engine.cancel(self.group)
                self.inbox.put_nowait(_GONE)
                return

    def _take(self, events, texts: list[str], finish: list, lps: list[dict]) -> int:
        """Add one step's ``events`` to the rows' texts, finish reasons and logprobs; returns how
        many rows finished. Raises a 500 :class:`APIError` if the engine failed."""
        finished = 0
        for ev in events:
            if ev.finish_reason == "error":
                raise APIError(500, _SERVER_FAILED, None, None, "server_error")
            if ev.prompt is not None:
                texts[ev.index] += self._add_prompt(lps[ev.index] if self.want_lp else None, ev)
            if ev.token_id is not None:
                self.completion_tokens += 1
                if self.want_lp:
                    self._add_logprob(lps[ev.index], ev, len(texts[ev.index]))
            texts[ev.index] += ev.text
            if ev.finish_reason:
                finish[ev.index] = ev.finish_reason
                finished += 1
        return finished


def _echo_texts(tokenizer, body: CompletionRequest, prompts: list[list[int]]) -> list[str]:
    """Each prompt's text as ``echo`` returns it: the string sent, or the token ids decoded."""
    given = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    return [p if isinstance(p, str) else tokenizer.decode(ids) for p, ids in zip(given, prompts)] \
        if len(given) == len(prompts) else [tokenizer.decode(ids) for ids in prompts]


def model_name_of(run: str) -> str:
    p = Path(str(run)).expanduser()
    if p.exists():
        p = p.resolve()
        return p.parent.name if p.name == "model" else p.name
    return str(run)


# -- chat completions: a chat request is rendered to a prompt, then answered as a completion -------
class ChatRequest(RequestFields):
    """The body of ``POST /v1/chat/completions`` (:class:`RequestFields` and these)."""

    messages: list[dict]
    max_completion_tokens: Optional[int] = None  # OpenAI's newer name for max_tokens; wins when both are given
    logprobs: Optional[bool] = None
    top_logprobs: Optional[int] = None


#: chat fields -> the completion fields they become (the rest keep their names)
_CHAT_ONLY = ("messages", "max_completion_tokens", "logprobs", "top_logprobs")


def completion_of_chat(body: ChatRequest, prompt: str) -> CompletionRequest:
    """The completion request that answers chat ``body`` whose messages rendered to ``prompt``:
    ``max_completion_tokens`` (or ``max_tokens``) -> ``max_tokens``; ``logprobs: true`` with
    ``top_logprobs: k`` -> ``logprobs: k``. Raises :class:`APIError` (400) for ``top_logprobs``
    without ``logprobs``, as OpenAI does."""
    if body.top_logprobs is not None and not body.logprobs:
        raise APIError(400, "top_logprobs needs logprobs: true.", "top_logprobs")
    fields = {k: v for k, v in body.model_dump(exclude_unset=True).items() if k not in _CHAT_ONLY}
    fields["prompt"] = prompt
    if body.max_completion_tokens is not None:
        fields["max_tokens"] = body.max_completion_tokens
    if body.logprobs:
        fields["logprobs"] = body.top_logprobs or 0
    return CompletionRequest(**fields)


def _chat_error(exc: APIError) -> APIError:
    """A completion's error said in chat's terms: the prompt is the rendered ``messages``, logprobs'
    limit is ``top_logprobs``'."""
    param = {"prompt": "messages", "logprobs": "top_logprobs"}.get(exc.param, exc.param)
    message = (exc.message.replace("The prompt 0 ", "The rendered messages ").replace("prompt 0 ", "the rendered messages ")
               .replace("logprobs must", "top_logprobs must"))
    if exc.param == "max_tokens" and message.startswith("max_tokens"):
        message = "max_tokens (max_completion_tokens)" + message[len("max_tokens"):]
    return APIError(exc.status, message, param, exc.code, exc.type)


async def chat_complete(server: Server, body: ChatRequest, request: Request):
    """``POST /v1/chat/completions``: render ``body.messages`` with the server's chat template, then
    answer as :meth:`Server.complete` does, in chat's shapes (``chat.completion``, or
    ``chat.completion.chunk`` events). The ``X-Chat-Template`` header says whose template rendered
    the prompt (``model`` or ``default``). Raises :class:`APIError` (4xx) for a bad request."""
    if server.loop is None:
        server.loop = asyncio.get_running_loop()
    template = server.chat_template
    try:
        prompt = template.render(body.messages)
    except ChatError as exc:
        raise APIError(400, str(exc), "messages") from None
    try:
        call = _ChatCompletion(server, completion_of_chat(body, prompt))
    except APIError as exc:
        raise _chat_error(exc) from None
    headers = {"X-Chat-Template": template.source}
    if body.stream:
        response = call.streaming_response()
        response.headers.update(headers)
        return response
    answer = await call.gather(request)
    return JSONResponse(answer, headers=headers) if isinstance(answer, dict) else answer


def _chat_logprob(token: str, logprob: float, top: dict | None) -> dict:
    """One entry of chat's ``logprobs.content``: the token, its log-probability, its UTF-8 bytes and
    the most likely tokens at that step in the same form."""
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8")),
            "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode("utf-8"))}
                             for t, v in (top or {}).items()]}


class _ChatCompletion(_Completion):
    """A chat request in flight: the completion of its rendered prompt (:class:`_Completion`, the one
    generation path), its answer in chat's shapes. Streamed: each choice's first delta carries
    ``role``, later ones ``content``, its last one the ``finish_reason``."""

    def __init__(self, server: Server, body: CompletionRequest):
        super().__init__(server, body)
        self.rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self._spoke: set[int] = set()  # choices whose role went out
        self._usage_null = bool(body.stream and (body.stream_options or {}).get("include_usage"))

    def chunk(self, choices: list, usage: dict | None = None) -> dict:
        out = super().chunk(choices, usage)
        out["object"] = "chat.completion.chunk"
        if self._usage_null:  # OpenAI: every chunk has "usage", null but in the last one
            out.setdefault("usage", None)
        return out

    def _add_logprob(self, lp: dict, ev, offset: int) -> None:
        lp.setdefault("content", []).append(
            _chat_logprob(self.server.tokenizer.decode([ev.token_id]), ev.logprob, ev.top_logprobs))

    def _event_of(self, rows: dict[int, list]) -> str | None:
        choices = []
        for index, (pieces, lp, finish) in rows.items():
            text, content_lp = "".join(pieces), (lp or {}).get("content")
            if not (text or finish or content_lp):
                continue
            delta = {} if index in self._spoke else {"role": "assistant"}
            self._spoke.add(index)
            if text or delta:
                delta["content"] = text
            choices.append({"index": index, "delta": delta,
                            "logprobs": {"content": content_lp or []} if self.want_lp else None,
                            "finish_reason": finish})
        if not choices:
            return None
        return "data: " + json.dumps(self.chunk(choices), ensure_ascii=False) + "\n\n"

    async def gather(self, request: Request):
        """The answer as one ``chat.completion`` body (see :meth:`_Completion.gather`)."""
        answer = await super().gather(request)
        if not isinstance(answer, dict):
            return answer
        answer["object"] = "chat.completion"
        answer["choices"] = [
            {"index": c["index"], "message": {"role": "assistant", "content": c["text"]},
             "logprobs": {"content": c["logprobs"].get("content", [])} if c["logprobs"] is not None else None,
             "finish_reason": c["finish_reason"]} for c in answer["choices"]]
        return answer
