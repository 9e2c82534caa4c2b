"""The batching engine in its own process.

Python threads share one interpreter lock: the web server's event loop (all Python: parsing
requests, writing server-sent events to 64 sockets) and the batching loop (torch calls, each
needing the lock back when it returns) slow each other down several times over (measured: the
engine alone 3,800 tokens/s; next to a busy Python thread 470). So ``lstm-pipeline serve`` runs
the :class:`~lstm_pipeline.serve.batcher.Engine` in a child process that loads the model itself;
the web process keeps only the tokenizer.

Protocol, over two one-way pipes: the web process sends ``("submit", id, prompts, settings,
max_tokens, seed, stop, logprobs, echo, logit_bias)``, ``("cancel", id)`` and ``("stop",)``; after every step the
child sends ``("step", [(id, [event tuple, ...]), ...], stats)``. Nothing in the child waits for the
web process: a slow reader only lets the pipe buffer fill.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
import time
import traceback
from typing import Callable, Iterator

from .batcher import Engine, Group, RowEvent

#: the engine process's OpenMP wait (libgomp), unless GOMP_SPINCOUNT or OMP_WAIT_POLICY is set: a
#: worker spins this many times for the next parallel region before it sleeps. libgomp's default
#: (300,000) keeps the engine's second CPU busy while its main thread runs Python between steps,
#: CPU the web process and the clients need; a short spin still catches the regions of one step,
#: which follow each other closely (docs/serve.md, "Performance").
OPENMP_SPIN = {"GOMP_SPINCOUNT": "2000"}


@contextlib.contextmanager
def openmp_spin_env() -> Iterator[None]:
    """``os.environ`` with :data:`OPENMP_SPIN` added for the ``with`` block (a process started inside
    it inherits them), unless the user chose the wait themselves (``GOMP_SPINCOUNT`` or
    ``OMP_WAIT_POLICY`` set); the environment is as before afterwards."""
    chosen = any(os.environ.get(k) for k in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY"))
    if not chosen:
        os.environ.update(OPENMP_SPIN)
    try:
        yield
    finally:
        if not chosen:
            for k in OPENMP_SPIN:
                os.environ.pop(k, None)


class _Stats:
    """The metrics hooks of :class:`Engine`, collected for the next message."""

    def __init__(self):
        self.steps: list[tuple[int, int, float]] = []
        self.ttft: list[float] = []

    def step(self, rows, tokens, seconds, max_batch):
        self.steps.append((rows, tokens, seconds))

    def first_token(self, seconds):
        self.ttft.append(seconds)


class _ChildEngine(Engine):
    def __init__(self, *args, out, **kwargs):
        super().__init__(*args, metrics=_Stats(), **kwargs)
        self.out = out
        self.groups: dict[int, Group] = {}
        self._pending: list = []
        self._send_lock = threading.Lock()

    def _deliver(self, batch) -> None:
        self._pending += [(g.id, [(e.index, e.token_id, e.text, e.logprob, e.top_logprobs, e.finish_reason, e.prompt)
                                   for e in events]) for g, events in batch]

    def _finish_group(self, live, reason) -> None:  # a cancel or a failure: the web process learns now
        super()._finish_group(live, reason)
        self.flush()

    def _step(self) -> None:
        try:
            super()._step()
        finally:
            self.flush()

    def _admit(self) -> None:
        try:
            super()._admit()
        finally:
            if self._pending:  # new requests' first tokens go out now, not after the next step
                self.flush()

    def flush(self) -> None:
        stats = self.metrics
        msg = ("step", self._pending, {"steps": self.steps, "active": self.active_rows, "tokens": self.tokens_generated,
                                       "peak": self.peak_rows, "step": stats.steps, "ttft": stats.ttft})
        self._pending, self.metrics = [], _Stats()
        for gid in [gid for gid, g in self.groups.items() if g.finished_at is not None or g.cancelled]:
            self.groups.pop(gid, None)
        with self._send_lock:
            self.out.send(msg)


def child_main(spec: dict, cmd, out) -> None:
    """The child process: load the model, run the engine, obey commands until told to stop."""
    try:
        import torch

        from ..artifacts.model_dir import load_pretrained

        torch.set_grad_enabled(False)
        model, tokenizer, config = load_pretrained(spec["model_dir"], map_location=spec["device"])
        engine = _ChildEngine(model, tokenizer, max_batch=spec["max_batch"], bos_token_id=spec["bos_token_id"],
                              eos_token_id=spec["eos_token_id"], out=out)
    except Exception as exc:  # the parent reports it
        out.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    out.send(("ready",))
    device = next(model.parameters()).device
    # the loop runs in the main thread, the only thread of this process that enters torch's OpenMP
    # parallel regions: libgomp then sees no more threads than CPUs and lets its workers wait
    # between regions by spinning (as generate's do), not by sleeping, which made every region pay a
    # wake-up (measured: the engine at 0.76x generate from a second thread, 0.93-0.96x from the main
    # one). How long they spin before sleeping is GOMP_SPINCOUNT, short by default here
    # (OPENMP_SPIN): the web process and the clients want the same CPUs.
    if spec["engine_thread"] == "own":
        engine.start()
        _obey(engine, cmd, device)
        engine.stop()
    else:
        threading.Thread(target=_obey, args=(engine, cmd, device), daemon=True, name="lstm-pipeline-serve-commands").start()
        engine._loop()


def _obey(engine: "_ChildEngine", cmd, device) -> None:
    """The child's commands: submit, cancel, stop (or the parent gone)."""
    import torch

    from ..registry import DECODERS

    decoders: dict[str, object] = {}
    while True:
        try:
            msg = cmd.recv()
        except (EOFError, OSError):
            break
        if msg[0] == "submit":
            _, gid, prompts, settings, max_tokens, seed, stop, logprobs, echo, bias = msg
            key = repr(sorted(settings.items()))
            if key not in decoders:
                decoders[key] = DECODERS.build(settings)
            gen = torch.Generator(device=device)
            gen.manual_seed(int(seed))
            g = Group(prompts, decoders[key], max_tokens, gen, emit=None, stop=stop, logprobs=logprobs, id=gid,
                      echo=echo, logit_bias=bias)
            engine.groups[gid] = g
            engine.submit(g)
        elif msg[0] == "cancel":
            g = engine.groups.get(msg[1])
            if g is not None:
                engine.cancel(g)
        elif msg[0] == "stop":
            break
    engine._stop = True
    engine._wake.set()


class EngineProcess:
    """The web process's handle on the engine child; the same interface as :class:`Engine`
    (``submit``, ``cancel``, ``active_rows``, ``queued_rows``, ``steps``, ...). ``deliver(batch)`` is
    called from a reader thread with ``[(group, [RowEvent, ...]), ...]`` after each step."""

    def __init__(self, model_dir: str, device: str = "cpu", *, max_batch: int = 64, bos_token_id: int = 0,
                 eos_token_id: int | None = None, metrics=None,
                 deliver: Callable[[list[tuple[Group, list[RowEvent]]]], None] | None = None,
                 start_timeout: float = 600):
        self.spec = dict(model_dir=str(model_dir), device=device, max_batch=max_batch, bos_token_id=bos_token_id,
                         eos_token_id=eos_token_id)
        self.max_batch, self.metrics, self.deliver = max_batch, metrics, deliver
        self.start_timeout = start_timeout
        self.groups: dict[int, Group] = {}
        self._left: dict[int, int] = {}  # rows not yet finished, per group
        self._lock = threading.Lock()
        self.steps = self.tokens_generated = self.peak_rows = 0
        self._active = 0
        self.error: BaseException | None = None
        self.proc = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> "EngineProcess":
        where = os.environ.get("LSTM_PIPELINE_SERVE_ENGINE_THREAD", "main")
        if where not in ("own", "main"):
            raise ValueError(f"LSTM_PIPELINE_SERVE_ENGINE_THREAD must be 'main' (the engine loop in the main thread of "
                             f"the engine process, the default) or 'own' (a thread of its own), got {where!r}")
        ctx = mp.get_context("spawn")  # a fresh interpreter: no forked torch thread pools
        cmd_r, self._cmd = ctx.Pipe(duplex=False)
        self._out, out_w = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=child_main, args=({**self.spec, "engine_thread": where}, cmd_r, out_w),
                                daemon=True, name="lstm-pipeline-serve-engine")
        with openmp_spin_env():  # the child reads its OpenMP settings when torch loads
            self.proc.start()
        cmd_r.close()
        out_w.close()
        if not self._out.poll(self.start_timeout):
            self.proc.kill()
            raise RuntimeError(f"the engine process did not start within {self.start_timeout} s")
        msg = self._out.recv()
        if msg[0] != "ready":
            self.proc.join(5)
            raise ValueError(f"the engine process could not load the model: {msg[1]}")
        self._reader = threading.Thread(target=self._read, name="lstm-pipeline-serve-reader", daemon=True)
        self._reader.start()
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self._send(("stop",))
        except OSError:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)

    # -- commands --------------------------------------------------------------------------
    def _send(self, msg) -> None:
        with self._lock:
            self._cmd.send(msg)

    def submit(self, group: Group) -> None:
        if self.error is not None:
            raise RuntimeError(f"the engine process failed: {self.error}")
        with self._lock:
            self.groups[group.id] = group
            self._left[group.id] = group.rows
        seed = group.seed if group.seed is not None else int(time.time_ns() % (2 ** 62))
        self._send(("submit", group.id, group.prompts, dict(group.settings), group.max_tokens, seed, group.stop,
                    group.logprobs, group.echo, group.logit_bias))

    def cancel(self, group: Group) -> None:
        group.cancelled = True
        try:
            self._send(("cancel", group.id))
        except OSError:
            pass

    # -- state -----------------------------------------------------------------------------
    @property
    def active_rows(self) -> int:
        return self._active

    @property
    def queued_rows(self) -> int:
        with self._lock:
            inflight = sum(self._left.values())
        return max(0, inflight - self._active)

    # -- the reader thread -----------------------------------------------------------------
    def _read(self) -> None:
        while True:
            try:
                msgs = [self._out.recv()]
                while len(msgs) < 256 and self._out.poll():  # this thread fell behind: all waiting steps in one hop
                    msgs.append(self._out.recv())
            except (EOFError, OSError) as exc:
                if self.proc is not None and self.proc.exitcode not in (0, None) or self.error is None:
                    self.error = self.error or RuntimeError(f"the engine process ended ({exc!r})")
                self._fail_all()
                return
            batch = []
            now = time.perf_counter()
            stats = None
            with self._lock:
                for msg in msgs:
                    if msg[0] != "step":
                        continue
                    _, items, stats = msg
                    for gid, events in items:
                        g = self.groups.get(gid)
                        if g is None:
                            continue
                        evs = [RowEvent(*e) for e in events]
                        if g.first_token_at is None:  # measured here: from the request reaching this process
                            g.first_token_at = now
                            if self.metrics is not None:
                                self.metrics.first_token(now - g.submitted)
                        done = sum(e.finish_reason is not None for e in evs)
                        if done:
                            self._left[gid] -= done
                            if self._left[gid] <= 0:
                                self._left.pop(gid, None)
                                self.groups.pop(gid, None)
                        batch.append((g, evs))
                    if self.metrics is not None:
                        for rows, tokens, seconds in stats["step"]:
                            self.metrics.step(rows, tokens, seconds, self.max_batch)
                # cancelled groups the child dropped without a final event (never admitted, or gone)
                for gid in [gid for gid, g in self.groups.items() if g.cancelled]:
                    self.groups.pop(gid, None)
                    self._left.pop(gid, None)
            if stats is not None:
                self.steps, self._active = stats["steps"], stats["active"]
                self.tokens_generated, self.peak_rows = stats["tokens"], stats["peak"]
            if batch and self.deliver is not None:
                try:
                    self.deliver(batch)
                except Exception:  # a delivery problem must not kill the reader
                    traceback.print_exc()

    def _fail_all(self) -> None:
        with self._lock:
            batch = [(g, [RowEvent(r, None, "", finish_reason="error") for r in range(g.rows)])
                     for g in self.groups.values()]
            self.groups.clear()
            self._left.clear()
        if batch and self.deliver is not None:
            self.deliver(batch)
