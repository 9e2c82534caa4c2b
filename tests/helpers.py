"""Helpers shared by the tests (importable as ``helpers``; pytest puts tests/ on sys.path)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

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
