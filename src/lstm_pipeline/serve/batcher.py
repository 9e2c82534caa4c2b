"""Continuous batching for a recurrent language model.

One thread steps every active row together (``model.step`` on a (B,) batch). A stream's whole
context is its fixed-size recurrent state, so rows join and leave between any two steps. The batch
is each row's state and the token it feeds next; one step is ``model.step`` on the whole batch,
then one token chosen per row:

- a new request's prompts are prefilled (``generation.strategies.prefill``, the same call
  ``lstm-pipeline generate`` makes), its first token is chosen from the prefill's logits at once,
  and its rows join the batch (states concatenated) with that token as their next input: no step
  of their own;
- a row that finished (end token, stop string, ``max_tokens``) leaves the batch as soon as its
  token is chosen, and a row whose client went away leaves before the next ``model.step``
  (``model.reorder_state``): its state is freed at once.

A request is a :class:`Group` of rows (its prompts times ``n``); every row of a group shares the
group's decoding settings and its ``torch.Generator``. Per step, a group draws one uniform number
per row it started with (finished rows included), as ``generate`` draws ``torch.rand(B, 1)`` for its
whole batch, so a seeded request gives the same tokens as ``lstm-pipeline generate seed=S`` with
the same settings (one prompt: ``prompt=``; several rows: ``prompts_file=`` with ``num_samples=n``),
whatever else is in the running batch. Bit-for-bit equality holds when the request runs alone (a
batch of its own rows, as in ``generate``); inside a larger batch the matrix products may round
differently in the last bit, which can change a draw that falls exactly on a boundary.

Logits go through the project's processors (``generation.processors.build_processors`` via the
decoding strategy): the constraint processors (which read the history) per group, the sampling
filters once for all rows that share the same settings.

Results are handed to the web side through ``emit(group, events)`` callbacks; the loop never waits
for a client.
"""
from __future__ import annotations

import copy
import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from tokenizers.decoders import DecodeStream
from torch import Tensor

from ..generation.processors import LogitsProcessor, setup_processor
from ..generation.stopping import StoppingCriteria
from ..generation.strategies import (
    COMMON,
    Greedy,
    Sample,
    StepDecoding,
    prefill,
    prompt_history,
    sample_from_logits,
)
from .sampling import LogitBias, prompt_logprobs, split_processors, token_text

#: finish reasons, as OpenAI names them
STOP, LENGTH, CANCELLED = "stop", "length", "cancelled"


@dataclass
class RowEvent:
    """One step's output for one row of a group."""
    index: int                # the row's index in its group (the OpenAI choice index)
    token_id: int | None      # None on a final event without a new token
    text: str                 # new text to show (may be "" while a character is incomplete)
    logprob: float | None = None
    top_logprobs: dict[str, float] | None = None
    finish_reason: str | None = None
    #: the echoed prompt (``echo``), on a row's first event: [(token_id, logprob or None, top_logprobs or None)]
    #: per prompt token (the first token's logprob is None; empty lists when logprobs were not asked)
    prompt: list | None = None


@dataclass
class Group:
    """One request: ``prompts`` (token ids, one list per row), its decoding strategy and settings."""
    prompts: list[list[int]]
    decoder: StepDecoding
    max_tokens: int
    generator: torch.Generator | None = None  # None: one seeded with ``seed`` (random when None)
    emit: Callable[["Group", list[RowEvent]], None] | None = None
    stop: list[str] = field(default_factory=list)
    logprobs: int | None = None
    seed: int | None = None
    settings: dict | None = None  # the decoding settings ``decoder`` was built from
    echo: bool = False  # the rows' first events carry their prompts (with logprobs when ``logprobs`` is set)
    logit_bias: dict[int, float] | None = None  # OpenAI's: added to these tokens' logits before the choice
    id: int = field(default_factory=itertools.count().__next__)
    # set by the engine
    cancelled: bool = False
    submitted: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    finished_at: float | None = None

    @property
    def rows(self) -> int:
        return len(self.prompts)


class _Live:
    """The engine's bookkeeping of one admitted group."""

    def __init__(self, group: Group, engine: "Engine", vocab_size: int, device):
        self.g = group
        if group.generator is None:
            group.generator = torch.Generator(device=device)
            if group.seed is not None:
                group.generator.manual_seed(int(group.seed))
            else:
                group.generator.seed()
        self.constraints, self.shape, self.shape_key = split_processors(group.decoder)
        if group.logit_bias:
            self.constraints.append(LogitBias(group.logit_bias))
        self.n = 0  # tokens generated per row so far
        R = group.rows
        self.done = [False] * R
        self.tokens: list[list[int]] = [[] for _ in range(R)]
        self.text: list[str] = [""] * R       # decoded generated text per row
        self.sent: list[int] = [0] * R        # characters of text already emitted
        self.streams = [DecodeStream(skip_special_tokens=False) for _ in range(R)]
        tk = engine.tokenizer.tk
        for s, p in zip(self.streams, group.prompts):
            for t in p:
                s.step(tk, int(t))
        self.stopping = StoppingCriteria(engine.eos_token_id, group.stop, engine.tokenizer)
        self.check_stop = engine.eos_token_id is not None or bool(group.stop)
        self.hold = max((len(s) for s in group.stop), default=1) - 1  # characters held back while a stop may be forming
        self.needs_history = bool(self.constraints) or bool(group.stop)
        if self.needs_history:
            self.history = prompt_history(group.prompts, group.max_tokens, vocab_size, device)  # (R, P + N)
            self.P = self.history.size(1) - group.max_tokens
            for p in self.constraints:
                setup_processor(p, self.P, group.max_tokens, engine.eos_token_id)
        self.greedy = isinstance(group.decoder, Greedy)
        self.sample = isinstance(group.decoder, Sample) and type(group.decoder).select is Sample.select
        # a plugin strategy's select may keep state across steps (Mirostat's mu): one copy per request
        self.decoder = group.decoder if self.greedy or self.sample else copy.deepcopy(group.decoder)

    def live_rows(self) -> list[int]:
        return [r for r, d in enumerate(self.done) if not d]


class Engine:
    """The batching loop. ``submit(group)`` from any thread; ``start()`` runs the loop in a daemon
    thread; ``stop()`` ends it. ``max_batch`` bounds the rows stepped together (more wait in line)."""

    def __init__(self, model, tokenizer, *, max_batch: int = 64, bos_token_id: int = 0,
                 eos_token_id: int | None = None, metrics=None,
                 deliver: Callable[[list[tuple[Group, list[RowEvent]]]], None] | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.max_batch = max_batch
        self.bos_token_id, self.eos_token_id = bos_token_id, eos_token_id
        self.device = next(model.parameters()).device
        self.metrics = metrics
        # deliver(batch): one call per step with every group's events (e.g. one hop to an event
        # loop); without it each group's own emit is called
        self.deliver = deliver
        self._inbox: "queue.Queue[Group]" = queue.Queue()
        self._waiting: list[Group] = []
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        # the running batch: one entry per row, in batch order (a group's rows are always adjacent)
        self._rows: list[tuple[_Live, int]] = []
        self._inputs: Tensor | None = None   # (B,) long: the token each row feeds to the next step
        self._state: tuple | None = None
        self._cancels = 0  # cancel() calls not yet looked at by the loop
        self.steps = 0
        self.peak_rows = 0  # the most rows ever stepped together
        self.tokens_generated = 0
        self.last_step_seconds = 0.0
        self.error: BaseException | None = None

    # -- public, any thread ------------------------------------------------------------
    def submit(self, group: Group) -> None:
        self._inbox.put(group)
        self._wake.set()

    def cancel(self, group: Group) -> None:
        """The client went away: the group's rows leave the batch before the next step."""
        group.cancelled = True
        self._cancels += 1
        self._wake.set()

    @property
    def active_rows(self) -> int:
        return len(self._rows)

    @property
    def queued_rows(self) -> int:
        return sum(g.rows for g in self._waiting) + sum(g.rows for g in list(self._inbox.queue))

    def start(self) -> "Engine":
        self._thread = threading.Thread(target=self._loop, name="lstm-pipeline-serve-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- the loop ------------------------------------------------------------------------
    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        while not self._stop:
            try:
                with torch.inference_mode():
                    self._admit()
                    if not self._rows:
                        self._wake.wait(0.5)
                        self._wake.clear()
                        continue
                    self._step()
            except BaseException as exc:  # a bug: fail every request in flight instead of hanging them
                self.error = exc
                for live in {id(l): l for l, _ in self._rows}.values():
                    self._finish_group(live, "error")
                self._rows, self._inputs, self._state = [], None, None
                import traceback
                traceback.print_exc()

    def _admit(self) -> None:
        while True:
            try:
                self._waiting.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        self._waiting = [g for g in self._waiting if not g.cancelled]
        admitted, free = [], self.max_batch - len(self._rows)
        while self._waiting and (self._waiting[0].rows <= free or self._waiting[0].max_tokens == 0):
            g = self._waiting.pop(0)
            if g.echo:
                self._echo(g)
            if g.max_tokens == 0:  # scoring only: the prompt's logprobs were all it asked for
                continue
            admitted.append(g)
            free -= g.rows
        if not admitted:
            return
        V = self._vocab_size()
        # prompts of equal length are prefilled in one fused call (a request alone: as generate does)
        buckets: dict[int, list[tuple[_Live, int]]] = {}
        order: dict[int, int] = {}
        for k, g in enumerate(admitted):
            live = _Live(g, self, V, self.device)
            order[id(live)] = k
            for r, p in enumerate(g.prompts):
                buckets.setdefault(max(len(p), 1), []).append((live, r))
        rows, parts = [], []
        for bucket in buckets.values():
            rows += bucket
            parts.append(prefill(self.model, [live.g.prompts[r] for live, r in bucket], self.bos_token_id))
        logits, state = parts[0]
        if len(parts) > 1:
            dims = self.model.state_batch_dims(state)
            logits = torch.cat([lg for lg, _ in parts])
            state = tuple(torch.cat([st[j] for _, st in parts], dim=d) for j, d in enumerate(dims))
            # each request's rows side by side, in order (a request with prompts of several lengths
            # was prefilled in several buckets); they stay adjacent in the batch from here on
            perm = sorted(range(len(rows)), key=lambda i: (order[id(rows[i][0])], rows[i][1]))
            if perm != list(range(len(rows))):
                index = torch.tensor(perm, dtype=torch.long, device=logits.device)
                logits, state = logits.index_select(0, index), self.model.reorder_state(state, index)
                rows = [rows[i] for i in perm]
        # the first token now, from the prefill's logits (it does not wait for the batch's step; each
        # request draws once for all its rows); then the rows join the batch with it as their next input
        nxt, keep = self._choose(rows, logits)
        if not keep:
            return
        if len(keep) < len(rows):
            index = torch.tensor(keep, dtype=torch.long, device=nxt.device)
            state, nxt = self.model.reorder_state(state, index), nxt.index_select(0, index)
            rows = [rows[i] for i in keep]
        self._join(rows, nxt, state)

    def _echo(self, g: Group) -> None:
        """Hand out ``g``'s prompts (OpenAI's ``echo``) as each row's first event, with every prompt
        token's log-probability when ``g.logprobs`` is set; a group with ``max_tokens=0`` ends there
        (finish reason ``length``)."""
        scored: dict[tuple, list] = {}
        events = []
        for r, p in enumerate(g.prompts):
            key = tuple(p)
            if key not in scored:  # n rows of one prompt: scored once
                scored[key] = (prompt_logprobs(self.model, list(p), g.logprobs,
                                               lambda t: token_text(self.tokenizer, t))
                               if g.logprobs is not None else [])
            events.append(RowEvent(r, None, "", finish_reason=LENGTH if g.max_tokens == 0 else None,
                                   prompt=scored[key]))
        if g.max_tokens == 0:
            g.finished_at = time.perf_counter()
        self._deliver([(g, events)])

    def _join(self, rows, inputs: Tensor, state: tuple) -> None:
        """Rows joining the batch: their next inputs (R,) and states, concatenated on the batch dims."""
        if not self._rows:
            self._rows, self._inputs, self._state = list(rows), inputs, state
            return
        dims = self.model.state_batch_dims(self._state)
        self._rows += rows
        self._inputs = torch.cat([self._inputs, inputs])
        self._state = tuple(torch.cat([a, b], dim=d) for a, b, d in zip(self._state, state, dims))

    def _keep(self, keep: list[int]) -> None:
        """Only the rows at positions ``keep`` stay in the batch; the others' states are freed."""
        if len(keep) == len(self._rows):
            return
        if not keep:
            self._rows, self._inputs, self._state = [], None, None
            return
        index = torch.tensor(keep, dtype=torch.long, device=self._inputs.device)
        self._state = self.model.reorder_state(self._state, index)
        self._inputs = self._inputs.index_select(0, index)
        self._rows = [self._rows[i] for i in keep]

    def _vocab_size(self) -> int:
        V = getattr(self.model, "vocab_size", None)
        return int(V) if V is not None else int(self.tokenizer.vocab_size)

    def _drop_cancelled(self) -> bool:
        """Rows whose client went away leave the batch (before the step); True when any left."""
        if not self._cancels:
            return False
        self._cancels = 0
        keep, gone = [], {}
        for i, (live, _) in enumerate(self._rows):
            if live.g.cancelled:
                gone[id(live)] = live
            else:
                keep.append(i)
        if not gone:
            return False
        self._keep(keep)
        for live in gone.values():
            self._finish_group(live, CANCELLED)
        return True

    def _step(self) -> None:
        """One step of the whole batch: ``model.step`` on every row's next input, then a token per row."""
        t0 = time.perf_counter()
        self._drop_cancelled()
        if not self._rows:
            return
        B = len(self._rows)
        self.peak_rows = max(self.peak_rows, B)
        logits, self._state = self.model.step(self._inputs, self._state)
        nxt, keep = self._choose(self._rows, logits)
        self._inputs = nxt
        self._keep(keep)
        self.steps += 1
        self.last_step_seconds = time.perf_counter() - t0
        if self.metrics is not None:
            self.metrics.step(B, B, self.last_step_seconds, self.max_batch)

    def _choose(self, rows: list[tuple[_Live, int]], logits: Tensor) -> tuple[Tensor, list[int]]:
        """Choose each row's next token from ``logits`` (B, V), hand the tokens out and return them
        (B,) with the positions of the rows that go on (the others finished)."""
        groups = _groups_of(rows)
        processed = _writable_logits(logits, groups)
        _apply_constraints(processed, groups)
        processed = _apply_filters(processed, groups)
        nxt = _select(processed, groups)
        keep = self._hand_out(groups, nxt, logits)
        return nxt, keep

    def _hand_out(self, groups: list[tuple[_Live, list[int], list[int]]], nxt: Tensor, logits: Tensor) -> list[int]:
        """Record the chosen tokens ``nxt`` (B,), stream each group its events and return the batch
        positions of the rows that go on. ``logits`` (B, V): the model's, for logprobs."""
        want_lp = any(live.g.logprobs is not None for live, _, _ in groups)
        logp = logits.float().log_softmax(-1) if want_lp else None
        ids = nxt.tolist()
        keep: list[int] = []
        out: list[tuple[Group, list[RowEvent]]] = []
        now = time.perf_counter()
        for live, idx, r in groups:
            out.append((live.g, self._group_step(live, idx, r, nxt, ids, logp, now, keep)))
        self._deliver(out)
        return keep

    def _group_step(self, live: _Live, idx: list[int], r: list[int], nxt: Tensor, ids: list[int],
                    logp: Tensor | None, now: float, keep: list[int]) -> list[RowEvent]:
        """One group's step: its first-token time, its rows' history, stop checks and events
        (returned); appends the batch positions of its rows that go on to ``keep``. ``idx``: the
        group's batch positions, ``r``: its row numbers, ``ids``: every row's token."""
        g = live.g
        if g.first_token_at is None:
            g.first_token_at = now
            if self.metrics is not None:
                self.metrics.first_token(now - g.submitted)
        n = live.n
        last_token = n + 1 >= g.max_tokens
        if live.needs_history:
            live.history[r, live.P + n] = nxt[idx]
        stopped = None
        if g.stop:  # stop strings: decoded text, as generate checks them
            window = live.history[r, live.P: live.P + n + 1]
            stopped = live.stopping(window, torch.zeros(len(r), dtype=torch.bool)).tolist()
        events = []
        for k, (i, row) in enumerate(zip(idx, r)):
            tid = ids[i]
            ev = self._row_event(live, row, tid, stopped[k] if stopped is not None else tid == self.eos_token_id,
                                 last_token)
            if logp is not None and g.logprobs is not None:
                self._add_logprobs(ev, logp[i], tid, g.logprobs)
            events.append(ev)
            if ev.finish_reason is None:
                keep.append(i)
            else:
                live.done[row] = True
        live.n += 1
        self.tokens_generated += len(idx)
        if all(live.done):
            g.finished_at = now
        return events

    def _row_event(self, live: _Live, row: int, tid: int, stop: bool, last_token: bool) -> RowEvent:
        """Row ``row`` of ``live`` chose token ``tid``: its text grows; the event says the new
        text and why the row finished (``stop``: a stop string or the end token; ``last_token``:
        max_tokens reached), or None."""
        chunk = live.streams[row].step(self.tokenizer.tk, tid)
        if chunk:
            live.text[row] += chunk
        finish = STOP if stop else LENGTH if last_token else None
        return RowEvent(row, tid, self._new_text(live, row, finish) if (chunk or finish) else "",
                        finish_reason=finish)

    def _add_logprobs(self, ev: RowEvent, logp_row: Tensor, tid: int, top_k: int) -> None:
        """The chosen token's log-probability on ``ev``, and the ``top_k`` most likely tokens'
        (decoded text -> logprob) when ``top_k`` > 0. ``logp_row``: (V,) log-softmax of the logits."""
        ev.logprob = float(logp_row[tid])
        if top_k > 0:
            top = logp_row.topk(top_k)
            ev.top_logprobs = {token_text(self.tokenizer, t): float(v)
                               for v, t in zip(top.values.tolist(), top.indices.tolist())}

    def _new_text(self, live: _Live, row: int, finish: str | None) -> str:
        """The text of ``row`` not yet emitted. A stop string is cut off (OpenAI's behaviour) and,
        while stop strings are set, the last few characters wait until they cannot start one."""
        text = live.text[row]
        end = len(text)
        if finish == STOP and live.g.stop:
            cuts = [text.find(s) for s in live.g.stop if s in text]
            if cuts:
                end = min(cuts)
            live.text[row] = text = text[:end]
        elif finish is None and live.hold:
            end = max(live.sent[row], len(text) - live.hold)
        out = text[live.sent[row]: end]
        live.sent[row] = max(live.sent[row], end)
        return out

    def _finish_group(self, live: _Live, reason: str) -> None:
        events = [RowEvent(r, None, "", finish_reason=reason) for r in live.live_rows()]
        for r in live.live_rows():
            live.done[r] = True
        if events:
            self._deliver([(live.g, events)])

    def _deliver(self, out: list[tuple[Group, list[RowEvent]]]) -> None:
        if self.deliver is not None:
            self.deliver(out)
        else:
            for g, events in out:
                g.emit(g, events)


def request_rows(prompts: Sequence[list[int]], n: int) -> list[list[int]]:
    """Each prompt ``n`` times, in the order ``generate prompts_file= num_samples=n`` batches them."""
    return [list(p) for p in prompts for _ in range(n)]


__all__ = ["Engine", "Group", "RowEvent", "request_rows", "COMMON"]


# -- the steps of Engine._choose ---------------------------------------------------------
def _groups_of(rows: list[tuple[_Live, int]]) -> list[tuple[_Live, list[int], list[int]]]:
    """The groups in the batch, in order, each with its batch positions and row numbers (a
    group's rows sit together in the batch)."""
    groups: list[tuple[_Live, list[int], list[int]]] = []
    last = None
    for i, (live, r) in enumerate(rows):
        if live is not last:
            groups.append((live, [], []))
            last = live
        groups[-1][1].append(i)
        groups[-1][2].append(r)
    return groups


def _writable_logits(logits: Tensor, groups) -> Tensor:
    """``logits`` (B, V) as float32, copied when the steps below write rows in place (the
    logprobs read the model's own logits)."""
    processed = logits.float()
    if processed is logits and (any(live.constraints for live, _, _ in groups)
                                or len({live.shape_key for live, _, _ in groups}) > 1):
        processed = processed.clone()
    return processed


def _apply_constraints(processed: Tensor, groups) -> None:
    """Each group's constraint processors (they read the group's history), on its rows of
    ``processed`` (B, V), in place."""
    for live, idx, r in groups:
        if live.constraints:
            hist = live.history[r, : live.P + live.n]
            sub = processed[idx]
            for proc in live.constraints:
                sub = proc(hist, sub)
            processed[idx] = sub


def _apply_filters(processed: Tensor, groups) -> Tensor:
    """The sampling filters (temperature, top-k, top-p, ...), once for all rows with the same
    settings; returns the filtered (B, V) logits."""
    B = processed.shape[0]
    by_shape: dict[Any, list[int]] = {}
    shape_procs: dict[Any, list[LogitsProcessor]] = {}
    for live, idx, _ in groups:
        if live.shape:
            by_shape.setdefault(live.shape_key, []).extend(idx)
            shape_procs.setdefault(live.shape_key, live.shape)
    empty = torch.empty(0, 0, dtype=torch.long)
    for key, idx in by_shape.items():
        whole = len(idx) == B
        sub = processed if whole else processed[idx]
        for proc in shape_procs[key]:
            sub = proc(empty, sub)
        if whole:
            processed = sub
        else:
            processed[idx] = sub
    return processed


def _select(processed: Tensor, groups) -> Tensor:
    """The next token of each row (B,) from filtered logits ``processed`` (B, V): greedy argmax,
    sampling with each group's own random numbers (drawn as generate draws them), or a plugin
    strategy's own ``select``."""
    B = processed.shape[0]
    sample_idx, uniforms = [], []
    other = False
    for live, idx, r in groups:
        if live.sample:
            g = live.g
            u = torch.rand(g.rows, 1, generator=g.generator, device=processed.device)  # as generate draws
            sample_idx += idx
            uniforms.append(u if len(r) == g.rows else u[r])
        else:
            other = True
    if not other:  # every row samples (the common case): one call for the batch
        return sample_from_logits(processed, u=torch.cat(uniforms) if len(uniforms) > 1 else uniforms[0])
    nxt = torch.empty(B, dtype=torch.long, device=processed.device)
    for live, idx, _ in groups:
        if live.greedy:
            nxt[idx] = processed[idx].argmax(-1)
        elif not live.sample:  # a plugin strategy's own select over this group's live rows
            nxt[idx] = live.decoder.select(processed[idx], live.g.generator)
    if sample_idx:
        nxt[sample_idx] = sample_from_logits(processed[sample_idx], u=torch.cat(uniforms))
    return nxt
