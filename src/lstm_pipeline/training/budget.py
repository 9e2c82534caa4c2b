"""Training for a wall-clock budget, and the precision a run picks by itself.

* :func:`parse_budget`: ``budget=2m`` (the shorthand of ``trainer.max_time``) in seconds;
* :func:`run_progress`: how far a run is, in [0, 1], read from the trainer: the fraction of its time
  limit spent (Lightning's ``Timer``, which a checkpoint carries, so a resumed run goes on counting
  the time already spent) when the run is bounded by time alone, else the fraction of its steps.
  The budgeted schedules (``scheduler=warmup_cosine_time``) read it at every optimizer step;
* :func:`auto_precision`: ``trainer.precision=auto``: ``bf16-mixed`` where the device computes in
  bfloat16 natively, ``32-true`` otherwise, with the reason.
"""
from __future__ import annotations

import re
from typing import Any

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd])")


def parse_budget(value: Any) -> float:
    """Seconds of a budget: a number of seconds (``90``), a number with a unit (``120s``, ``2m``,
    ``1.5h``, ``1d``), units combined (``1h30m``, ``2m30s``) or Lightning's ``DD:HH:MM:SS``.
    Raises ``ValueError`` (one line naming ``budget``) for anything else or a budget that is not > 0."""
    text = str(value).strip().lower().replace(" ", "")
    seconds = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif re.fullmatch(r"\d+(\.\d*)?", text):
        seconds = float(text)
    elif re.fullmatch(r"\d+:\d\d:\d\d:\d\d", text):
        d, h, m, s = (int(p) for p in text.split(":"))
        seconds = float(((d * 24 + h) * 60 + m) * 60 + s)
    elif text and re.fullmatch(f"(?:{_PART.pattern})+", text):
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    if seconds is None or not seconds > 0:
        raise ValueError(f"budget={value} is not a training time: give seconds or a duration with units, e.g. "
                         f"budget=120s, budget=2m, budget=1h30m (or trainer.max_time=00:00:02:00).")
    return seconds


def timer_of(trainer):
    """The trainer's time-limit callback (Lightning adds a ``Timer`` for ``max_time``), or None."""
    from lightning.pytorch.callbacks import Timer

    return next((c for c in trainer.callbacks if isinstance(c, Timer) and c._duration), None)


def run_progress(trainer, step: int) -> float:
    """The fraction of the run done after ``step`` optimizer steps, in [0, 1].

    A run bounded by time alone (``budget``/``trainer.max_time`` with ``trainer.max_steps=-1``):
    training seconds elapsed / the limit, counting the time of the runs it resumes (validation
    inside training counts, as it does towards Lightning's limit). Otherwise ``step`` / the run's
    steps (``trainer.max_steps``, or the steps of ``max_epochs``). Raises ``ValueError`` for a run
    with no limit at all."""
    timer = timer_of(trainer)
    if timer is not None and (trainer.max_steps is None or trainer.max_steps < 0):
        return min(max(timer.time_elapsed("train") / timer._duration, 0.0), 1.0)
    total = trainer.estimated_stepping_batches
    if not total or total == float("inf"):
        raise ValueError("scheduler=warmup_cosine_time follows the run's limit, and this run has none: set "
                         "budget=2m (or trainer.max_time) or trainer.max_steps.")
    return min(max(step / total, 0.0), 1.0)


def auto_precision(accelerator: str | None) -> tuple[str, str]:
    """``(precision, reason)`` for ``trainer.precision=auto``: ``bf16-mixed`` where the device has
    native bfloat16 (a CUDA GPU that supports it; a CPU with AVX512-BF16 or AMX, as oneDNN reports),
    else ``32-true``."""
    import torch

    acc = str(accelerator or "auto").lower()
    if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed", f"{torch.cuda.get_device_name()} computes in bfloat16"
        return "32-true", "the GPU has no native bfloat16"
    if acc not in ("cpu", "auto"):
        return "32-true", f"bfloat16 is not chosen automatically on accelerator={acc}"
    native = cpu_has_native_bf16()
    if native:
        return "bf16-mixed", "this CPU computes in bfloat16 natively (AVX512-BF16/AMX)"
    return "32-true", "this CPU has no native bfloat16 (AVX512-BF16 or AMX), where bf16 would be slower"


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX, as torch.cpu reports them (oneDNN's own check also accepts plain AVX512,
    where bfloat16 is emulated and slower than float32)."""
    import torch

    cpu = torch.cpu
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch without these checks: read the CPU's flags
        try:
            with open("/proc/cpuinfo") as f:
                flags = f.read()
        except OSError:
            return False
        return " avx512_bf16" in flags or " amx_bf16" in flags
