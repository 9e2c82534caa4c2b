"""Helpers shared by the tests (importable as ``helpers``; pytest puts tests/ on sys.path)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the shared data sets (WikiText-2, Tiny Shakespeare): $LSTM_PIPELINE_SHARED_DATA, else ../shared/data
#: beside the checkout (bench/shared_data.py follows the same rule); tests that need them skip saying so
SHARED_DATA_ENV = "LSTM_PIPELINE_SHARED_DATA"
SHARED_DATA = Path(os.environ.get(SHARED_DATA_ENV) or ROOT.parent / "shared" / "data")

# a tiny model and a few steps: enough to exercise every stage in seconds
TINY = [
    "model.hidden_size=32", "model.embedding_dim=16", "batching.batch_size=4", "batching.bptt=16",
    "batching.eval_batch_size=2", "trainer.max_steps=12", "trainer.val_check_interval=6",
    "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", "sample.max_new_tokens=20",
]



def run_cli(*args: str, cwd: Path | None = None, check: bool = True, env: dict | None = None,
            timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lstm_pipeline.cli", *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def make_dist(root, dist: str, entry_points: str, files: dict[str, str] | None = None) -> None:
    """A distribution as pip installs it, under ``root`` (put ``root`` on sys.path): a dist-info
    directory with ``entry_points`` (INI text) and the given source files (relative path -> code)."""
    import textwrap

    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for rel, src in (files or {}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(src))


class ServeProcess:
    """``lstm-pipeline serve`` in a subprocess on a free loopback port (a context manager):
    ``.url`` is ``http://127.0.0.1:<port>``; leaving stops the server. Waits for ``/health``."""

    def __init__(self, *overrides: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 90):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ["serve", *overrides, f"port={self.port}", "log_level=warning"]
        self.env, self.cwd, self.timeout = env, cwd, timeout
        self.proc = None

    def __enter__(self) -> "ServeProcess":
        import tempfile
        import time
        import urllib.request

        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "lstm_pipeline.cli", *self.args], cwd=self.cwd,
                                     stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(self.env or {})})
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"lstm-pipeline serve exited ({self.proc.returncode}):\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        raise AssertionError(f"lstm-pipeline serve did not answer /health in {self.timeout} s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()[-5000:]

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def stale_entry_points() -> list[str]:
    """The entry points this checkout's pyproject.toml declares that the installed lstm-pipeline's
    metadata lacks ("group: name = value"): an editable install made before they were added (only a
    reinstall rewrites that metadata). Empty when the install is current, or not installed."""
    import tomllib
    from importlib.metadata import PackageNotFoundError, distribution

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {(group, name, value) for group, eps in project.get("entry-points", {}).items()
                for name, value in eps.items()}
    try:
        installed = {(ep.group, ep.name, ep.value) for ep in distribution(project["name"]).entry_points}
    except PackageNotFoundError:
        return []
    return [f"{g}: {n} = {v}" for g, n, v in sorted(declared - installed)]


#: Python's warning filters at start-up (no -W options), the last one first in the list
_DEFAULT_WARNING_FILTERS = [("ignore", ResourceWarning, ""), ("ignore", ImportWarning, ""),
                            ("ignore", PendingDeprecationWarning, ""), ("ignore", DeprecationWarning, ""),
                            ("default", DeprecationWarning, "__main__")]


def _show_warning(msg) -> None:
    """What Python prints for a warning: to stderr."""
    import warnings

    file = msg.file or sys.stderr
    if file is not None:
        file.write(warnings._formatwarnmsg(msg))


def run_cli_in_process(capture, *args: str, cwd: Path | None = None, check: bool = True, env: dict | None = None,
                       input: str | None = None) -> subprocess.CompletedProcess:
    """``lstm-pipeline <args>`` run by ``lstm_pipeline.cli.main`` inside this process, answered as
    :func:`run_cli` answers (a CompletedProcess: returncode, stdout, stderr), without the 3-4 s of
    imports a new interpreter pays. For tests of what a command does, not of the process boundary
    (the console script, a real exit status: those keep :func:`run_cli`).

    ``env`` is set in ``os.environ`` for the call (so PYTHONPATH there does not reach ``sys.path``).
    ``capture`` is pytest's ``capfd`` (what is written to file descriptors 1 and 2 is the output, as
    a subprocess's pipes would hold it). The status is what the interpreter would exit with:
    ``main``'s return value or ``SystemExit``'s code; an uncaught exception prints its traceback to
    stderr and gives 1, as Python does. What a process would start afresh is restored afterwards:
    the environment, argv, cwd, stdin, warnings filters, logging handlers and levels, torch's default
    device, thread count, grad mode and random states; ``atexit`` functions the project registers
    during the call (the empty run directory a bad ``train`` leaves is removed at exit) run at the
    end of the call, as at a process's exit."""
    import atexit
    import io
    import logging
    import random
    import traceback
    import warnings

    import numpy as np
    import torch

    from lstm_pipeline import cli

    capture.readouterr()  # what came before is not this command's output
    saved_env, saved_argv, saved_path = dict(os.environ), sys.argv[:], sys.path[:]
    saved_cwd, saved_stdin = os.getcwd(), sys.stdin
    manager = logging.Logger.manager
    loggers = {name: lg for name, lg in manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    loggers[""] = logging.getLogger()
    saved_logging = {name: (lg.handlers[:], lg.level, lg.propagate, lg.disabled) for name, lg in loggers.items()}
    saved_torch = (torch.get_default_device(), torch.get_num_threads(), torch.is_grad_enabled(),
                   torch.get_default_dtype(), torch.get_rng_state())
    saved_random, saved_np = random.getstate(), np.random.get_state()
    at_exit, real_register = [], atexit.register

    def register(fn, *a, **kw):  # the project's exit-time clean-up runs when this "process" ends
        if getattr(fn, "__module__", "").startswith("lstm_pipeline"):
            at_exit.append((fn, a, kw))
            return fn
        return real_register(fn, *a, **kw)

    # the root logger as a new interpreter has it: no handlers (a warning goes to stderr through
    # logging.lastResort), level WARNING; not pytest's capturing handlers
    logging.getLogger().handlers[:] = []
    logging.getLogger().setLevel(logging.WARNING)
    os.environ.update(env or {})
    sys.argv = [cli.__file__]  # as `python -m lstm_pipeline.cli` has it
    sys.stdin = io.StringIO(input or "")
    atexit.register = register
    if saved_torch[0].type != "cpu":  # LSTM_PIPELINE_TEST_DEVICE does not reach a CLI run (as in a subprocess)
        torch.set_default_device(None)
    status = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        with warnings.catch_warnings():
            # a new interpreter's warning filters and display (pytest records warnings and shows every
            # DeprecationWarning): what the command lets through reaches its stderr, as in a process
            warnings.resetwarnings()
            for action, category, module in _DEFAULT_WARNING_FILTERS:
                warnings.filterwarnings(action, category=category, module=module)
            warnings._processoptions(sys.warnoptions)
            warnings.showwarning, warnings._showwarnmsg_impl = warnings._showwarning_orig, _show_warning
            try:
                status = cli.main(list(args))
            except SystemExit as exc:
                status = exc.code
            except BaseException:  # what the interpreter does with an uncaught exception
                traceback.print_exc()
                status = 1
            if status is None:
                status = 0
            elif not isinstance(status, int):  # sys.exit("message"): printed, status 1
                print(status, file=sys.stderr)
                status = 1
            for fn, a, kw in reversed(at_exit):
                fn(*a, **kw)
            sys.stdout.flush()
            sys.stderr.flush()
    finally:
        atexit.register = real_register
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv, sys.path[:], sys.stdin = saved_argv, saved_path, saved_stdin
        for name, lg in list(manager.loggerDict.items()) + [("", logging.getLogger())]:
            if not isinstance(lg, logging.Logger):
                continue
            handlers, level, propagate, disabled = saved_logging.get(name, ([], logging.NOTSET, True, False))
            for h in lg.handlers:
                if h not in handlers:
                    h.close()  # the run's log files
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate, lg.disabled = propagate, disabled
        device, threads, grad, dtype, rng = saved_torch
        if device.type != "cpu":
            torch.set_default_device(device)
        torch.set_num_threads(threads)
        torch.set_grad_enabled(grad)
        torch.set_default_dtype(dtype)
        torch.set_rng_state(rng)
        random.setstate(saved_random)
        np.random.set_state(saved_np)
    out, err = capture.readouterr()
    proc = subprocess.CompletedProcess(["lstm-pipeline", *args], status, out, err)
    if check and status != 0:
        raise AssertionError(f"{' '.join(args)} failed ({status}):\n{out[-3000:]}\n{err[-5000:]}")
    return proc
