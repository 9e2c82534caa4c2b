"""Without the network, the commands that talk to the Hugging Face Hub (push, train on a Hub
dataset) end in one clear error line, exit status 1 and no traceback.

"Without the network" is real here: HF_ENDPOINT points at a local port nothing listens on, so every
connection is refused at once (the same failure as a DNS lookup that fails, minus the wait)."""
import http.server
import socket
import threading

import pytest

from helpers import TINY, run_cli
from lstm_pipeline.network import network_error_details, network_errors
from test_hub import make_model_dir


def closed_port() -> int:
    """A local port that nothing listens on (bound, then released): connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_env(tmp_path, port: int, **extra) -> dict:
    """The Hub at a refused local port, empty caches (nothing cached can stand in), no token."""
    return {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0",
            "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
            "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets"), "HF_TOKEN": "hf_dummy",
            "HYDRA_FULL_ERROR": "0", **extra}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("net") / "model")[1]


def test_push_with_the_hub_unreachable_is_a_clear_error(model_dir, tmp_path):
    port = closed_port()
    proc = run_cli("push", f"run={model_dir}", "repo_id=my-org/shakespeare-lstm", cwd=tmp_path, check=False,
                   env=offline_env(tmp_path, port), timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    first, hint = proc.stderr.strip().splitlines()[-2:]
    assert first.startswith("lstm-pipeline push: error: Could not reach the Hugging Face Hub (ConnectError: ")
    assert "Connection refused" in first and f"POST http://127.0.0.1:{port}/api/repos/create" in first
    assert first.endswith("Check the network, unset HF_HUB_OFFLINE, log in with 'hf auth login' (or set HF_TOKEN); "
                          "dry_run=true lists what would be sent.")
    assert hint == "(Set HYDRA_FULL_ERROR=1 for the traceback.)"
    assert "Uploaded" not in proc.stdout


def test_push_unreachable_with_hydra_full_error_keeps_the_traceback(model_dir, tmp_path):
    proc = run_cli("push", f"run={model_dir}", "repo_id=my-org/shakespeare-lstm", cwd=tmp_path, check=False,
                   env=offline_env(tmp_path, closed_port(), HYDRA_FULL_ERROR="1"), timeout=120)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ConnectError" in proc.stderr
    assert "ValueError: Could not reach the Hugging Face Hub" in proc.stderr


def test_push_in_offline_mode_is_the_documented_error(model_dir, tmp_path):
    proc = run_cli("push", f"run={model_dir}", "repo_id=my-org/shakespeare-lstm", cwd=tmp_path, check=False,
                   env=offline_env(tmp_path, closed_port(), HF_HUB_OFFLINE="1"), timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert ("lstm-pipeline push: error: Could not reach the Hugging Face Hub (OfflineModeIsEnabled: Cannot reach "
            "http://127.0.0.1:") in proc.stderr and "/api/repos/create: offline mode is enabled." in proc.stderr


def _train_hub_dataset(tmp_path, env):
    return run_cli("train", "data=wikitext2", *TINY, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                   check=False, env=env, timeout=300)


@pytest.mark.slow  # a whole train command in a subprocess (60 s under load)
def test_train_on_a_hub_dataset_offline_and_not_cached_is_a_clear_error(tmp_path):
    proc = _train_hub_dataset(tmp_path, offline_env(tmp_path, closed_port(), HF_HUB_OFFLINE="1"))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-2]
    # (LocalEntryNotFoundError) or (OfflineModeIsEnabled), depending on what datasets tries first
    assert line.startswith("lstm-pipeline train: error: Could not reach the Hugging Face Hub (ConnectionError: "
                           "Couldn't reach 'wikitext' on the Hub (")
    assert "): HF_HUB_OFFLINE=1 is set and this is not in the local cache. Download it once while online" in line
    assert "unset HF_HUB_OFFLINE" in line and "data=text data.path=<file>" in line and "data=files" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow  # huggingface_hub retries a refused HEAD with backoff (1+2+4+8+8 s) before giving up
def test_train_on_a_hub_dataset_with_the_hub_unreachable_is_a_clear_error(tmp_path):
    port = closed_port()
    proc = _train_hub_dataset(tmp_path, offline_env(tmp_path, port))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-2]
    assert line.startswith(f"lstm-pipeline train: error: Could not reach the Hugging Face Hub "
                           f"(http://127.0.0.1:{port}) or the network (ConnectionError: Couldn't reach 'wikitext' "
                           f"on the Hub (LocalEntryNotFoundError)). Check the network connection")
    assert "set HF_HUB_OFFLINE=1 to use what is in the local Hugging Face cache" in line
    assert "data=text data.path=<file>" in line and "data=files" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


# -- what counts as a connection failure: real failures of the real clients, no mocks --------------
def _raised(fn):
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - the exception is what is tested
        return exc
    raise AssertionError("did not raise")


@pytest.fixture
def http_404():
    """A local HTTP server that answers 404 to everything (reachable, but an HTTP error)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_connection_failures_of_every_client_are_recognised():
    url = f"http://127.0.0.1:{closed_port()}/x"
    import urllib.request

    failures = [_raised(lambda: urllib.request.urlopen(url, timeout=5)),  # URLError from ConnectionRefusedError
                _raised(lambda: socket.create_connection(("127.0.0.1", closed_port()), timeout=5))]
    httpx2 = pytest.importorskip("httpx2")
    failures.append(_raised(lambda: httpx2.get(url)))
    requests = pytest.importorskip("requests")
    failures.append(_raised(lambda: requests.get(url, timeout=5)))
    for exc in failures:
        assert network_errors(exc), repr(exc)
    assert "POST" not in network_error_details(failures[2]) and f"GET {url}" in network_error_details(failures[2])


def test_a_read_timeout_is_a_connection_failure():
    httpx2 = pytest.importorskip("httpx2")
    with socket.socket() as server:  # accepts, never answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        exc = _raised(lambda: httpx2.get(f"http://127.0.0.1:{server.getsockname()[1]}/", timeout=0.3))
    assert type(exc).__name__ == "ReadTimeout" and network_errors(exc)


def test_other_errors_are_not_connection_failures(http_404):
    httpx2 = pytest.importorskip("httpx2")
    status = _raised(lambda: httpx2.get(http_404 + "/missing").raise_for_status())
    assert type(status).__name__ == "HTTPStatusError" and not network_errors(status)
    assert not network_errors(BrokenPipeError(32, "Broken pipe"))  # `lstm-pipeline generate | head`

    refused = _raised(lambda: socket.create_connection(("127.0.0.1", closed_port()), timeout=5))

    def bug_while_handling():
        try:
            raise refused
        except ConnectionError:
            return {}["key"]  # a bug in a fallback: implicit context only

    def deliberate_wrap():
        try:
            raise refused
        except ConnectionError as e:
            raise RuntimeError("download failed") from e

    assert not network_errors(_raised(bug_while_handling))
    wrapped = _raised(deliberate_wrap)
    assert network_errors(wrapped) == [refused]
    assert network_error_details(wrapped) == f"RuntimeError: download failed; {type(refused).__name__}: {refused}"


@pytest.fixture
def http_401():
    """A local stand-in for the Hub that refuses every request with 401 (a missing or bad token)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def _refuse(self):
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            body = b'{"error": "Invalid credentials in Authorization header"}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _refuse

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_push_refused_by_the_hub_says_to_log_in(model_dir, tmp_path, http_401):
    proc = run_cli("push", f"run={model_dir}", "repo_id=my-org/shakespeare-lstm", cwd=tmp_path, check=False,
                   env=offline_env(tmp_path, http_401), timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert ("lstm-pipeline push: error: The Hugging Face Hub refused to write to 'my-org/shakespeare-lstm' "
            "(HTTP 401). Log in with 'hf auth login' or set HF_TOKEN") in proc.stderr


def test_a_closed_pipe_ends_the_command_quietly(model_dir, tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "lstm_pipeline.cli", "generate", f"run={model_dir}", "prompt=a",
           "max_new_tokens=4000", "decoding=greedy"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(1)  # like `| head -c 1`: take a little, then close the pipe
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
