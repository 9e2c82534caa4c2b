"""``lstm-pipeline serve``: an OpenAI-compatible completions API over one model, continuously batched.

Endpoints: ``POST /v1/completions`` (OpenAI's shape, plus the project's decoding settings),
``GET /v1/models``, ``GET /health``, ``GET /metrics`` (Prometheus text format) and ``GET /`` (a page
to try the model). The model is fixed when the server starts; no request can name a file.

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

import torch

from ..extras import MissingExtraError, requires
from ..generation.processors import OFF
from ..generation.strategies import COMMON, SAMPLING, StepDecoding
from .batcher import Engine, Group, request_rows


MissingDependencyError = MissingExtraError  # the web stack is not installed (one line from the CLI)

for _module in ("fastapi", "prometheus_client"):
    requires("serve", _module)
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse  # noqa: E402
from pydantic import BaseModel, ConfigDict  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

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


class CompletionRequest(BaseModel):
    """The body of ``POST /v1/completions``. Unknown fields are an error (a misspelled setting would
    otherwise be ignored silently)."""
    model_config = ConfigDict(extra="forbid")

    model: Optional[str] = None
    prompt: Union[str, list[str], list[int], list[list[int]]] = ""
    max_tokens: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    n: int = 1
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = None
    stream: bool = False
    logprobs: Optional[int] = None
    user: Optional[str] = None  # accepted and ignored, as OpenAI clients may send it
    stream_options: Optional[dict] = None  # {"include_usage": true}
    # the project's own decoding options (docs/generation.md)
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

    PATHS = ("/v1/completions", "/v1/models", "/health", "/metrics", "/")

    def __init__(self, app, server: "Server"):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        server = self.server
        path = scope["path"]
        headers = dict(scope["headers"])
        label = path if path in self.PATHS else "other"
        protected = path.startswith("/v1") or path == "/metrics"
        if protected and server.api_key is not None:
            scheme, _, key = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(key.strip().encode(), server.api_key.encode()):
                server.metrics.requests.labels(label, "401").inc()
                return await error_response(401, "Incorrect or missing API key: send it as 'Authorization: Bearer <key>'.",
                                            None, "invalid_api_key")(scope, receive, send)
        size = headers.get(b"content-length", b"").decode("latin-1")
        if size.isdigit() and int(size) > server.limits["max_body_bytes"]:
            return await error_response(413, f"the request body is larger than {server.limits['max_body_bytes']} "
                                             f"bytes.")(scope, receive, send)
        counted = False

        async def counting_send(message):
            nonlocal counted
            if not counted and message["type"] == "http.response.start":
                counted = True
                server.metrics.requests.labels(label, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)


class Server:
    """The model, the engine and the limits; builds the FastAPI app (:meth:`app`)."""

    def __init__(self, model, tokenizer, config: dict, *, model_name: str, decoding: dict,
                 api_key: str | None = None, max_batch: int = 64, max_prompt_tokens: int = 4096,
                 max_tokens: int = 2048, default_max_tokens: int = 16, max_n: int = 16, max_streams: int = 256,
                 max_logprobs: int = 5, eos_token: str | None = None, on_unknown: str = "error",
                 max_body_bytes: int = 1_000_000, model_dir: str | None = None, device: str = "cpu",
                 stream_interval_ms: float = 0):
        """``model_dir`` given: the batching engine runs in a child process that loads the model
        from there (``lstm-pipeline serve`` does this; ``model`` may then be None). Otherwise it
        runs in a thread of this process over ``model``. ``stream_interval_ms``: a stream gets at
        most one server-sent event per this many milliseconds (the tokens chosen meanwhile go out in
        it together; a stream's first event is never held); 0 sends each step's tokens at once (a
        stream that fell behind still gets what is waiting as one event)."""
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
            if settings.get("name") == "greedy" and any(k in SAMPLING and v != OFF[k] for k, v in given.items()):
                settings["name"] = "sample"
                settings = {k: v for k, v in settings.items() if k == "name" or k in COMMON or k in given}
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

    def group_for(self, body: CompletionRequest, emit) -> tuple[Group, list[list[int]]]:
        L = self.limits
        if body.model is not None and body.model != self.model_name:
            raise APIError(404, f"The model '{body.model}' does not exist here; this server serves '{self.model_name}' "
                                f"(GET /v1/models).", "model", "model_not_found")
        max_tokens = L["default_max_tokens"] if body.max_tokens is None else body.max_tokens
        if not 1 <= max_tokens <= L["max_tokens"]:
            raise APIError(400, f"max_tokens must be between 1 and {L['max_tokens']} on this server, got {max_tokens}.",
                           "max_tokens")
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
                      settings=self._settings_of[id(decoder)])
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
        _add_routes(app, self)
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
        return error_response(exc.status_code, str(exc.detail), None, None,
                              "invalid_request_error" if exc.status_code < 500 else "server_error")


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

    @app.get("/", response_class=HTMLResponse)
    async def page():
        from .page import render_page

        return render_page(server)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        return await server.complete(body, request)


_SERVER_FAILED = "the server failed while generating; see its log."


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
        self.prompt_tokens = sum(len(p) for p in prompts) * body.n
        self.n_rows = self.group.rows
        self.want_lp = body.logprobs is not None
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
        """Token counts so far: prompt (times n), completion, total."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    def _add_logprob(self, lp: dict, ev, offset: int) -> None:
        """Append token event ``ev`` to logprobs object ``lp``; ``offset``: the characters of its
        row's text before this token."""
        lp["tokens"].append(self.server.tokenizer.decode([ev.token_id]))
        lp["token_logprobs"].append(ev.logprob)
        lp["top_logprobs"].append(ev.top_logprobs or {})
        lp["text_offset"].append(offset)

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
        disconnects (checked each second) gets its rows cancelled and a bare 499; raises a 500
        :class:`APIError` if the engine failed."""
        texts, finish = [""] * self.n_rows, [None] * self.n_rows
        lps = [_empty_logprobs() for _ in range(self.n_rows)]
        left = self.n_rows
        try:
            while left > 0:
                try:
                    events = await asyncio.wait_for(self.inbox.get(), timeout=1.0)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        self.server.engine.cancel(self.group)
                        return JSONResponse({}, status_code=499)
                    continue
                left -= self._take(events, texts, finish, lps)
        except asyncio.CancelledError:
            self.server.engine.cancel(self.group)
            raise
        self.server.metrics.latency.observe(time.perf_counter() - self.started)
        choices = [{"text": t, "index": i, "logprobs": lps[i] if self.want_lp else None,
                    "finish_reason": f} for i, (t, f) in enumerate(zip(texts, finish))]
        return self.chunk(choices, self.usage())

    def _take(self, events, texts: list[str], finish: list, lps: list[dict]) -> int:
        """Add one step's ``events`` to the rows' texts, finish reasons and logprobs; returns how
        many rows finished. Raises a 500 :class:`APIError` if the engine failed."""
        finished = 0
        for ev in events:
            if ev.finish_reason == "error":
                raise APIError(500, _SERVER_FAILED, None, None, "server_error")
            if ev.token_id is not None:
                self.completion_tokens += 1
                if self.want_lp:
                    self._add_logprob(lps[ev.index], ev, len(texts[ev.index]))
            texts[ev.index] += ev.text
            if ev.finish_reason:
                finish[ev.index] = ev.finish_reason
                finished += 1
        return finished


def model_name_of(run: str) -> str:
    p = Path(str(run)).expanduser()
    if p.exists():
        p = p.resolve()
        return p.parent.name if p.name == "model" else p.name
    return str(run)
