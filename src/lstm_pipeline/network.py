"""Telling "the network could not be reached" (the Hugging Face Hub, a download) apart from other
errors, and saying so in one message with what to do: used by the CLI for every command and by
``push``."""
from __future__ import annotations

import os
import sys

#: (top-level module, class name) of the exceptions that mean "the network (the Hugging Face Hub, a
#: download URL) could not be reached": connection refused or reset, DNS failures, timeouts, offline
#: mode. Matched by name along each class's MRO, so the optional HTTP stacks need not be importable;
#: httpx's TransportError covers ConnectError, the timeouts, NetworkError and ProxyError, not HTTP
#: status errors (401, 404, ... stay what they are).
NETWORK_ERRORS = frozenset({
    ("builtins", "ConnectionError"),  # refused, reset, huggingface_hub's OfflineModeIsEnabled, datasets' own
    ("socket", "gaierror"),  # name resolution
    ("httpx", "TransportError"), ("httpx2", "TransportError"),
    ("httpcore", "NetworkError"), ("httpcore", "TimeoutException"), ("httpcore", "ProxyError"),
    ("requests", "ConnectionError"), ("requests", "Timeout"),
    ("urllib3", "NewConnectionError"), ("urllib3", "NameResolutionError"), ("urllib3", "ConnectTimeoutError"),
    ("urllib3", "ReadTimeoutError"),
    ("aiohttp", "ClientConnectionError"), ("aiohttp", "ServerTimeoutError"),
    ("huggingface_hub", "OfflineModeIsEnabled"),
    ("huggingface_hub", "LocalEntryNotFoundError"),  # not in the cache, and the Hub not reachable
})
#: ConnectionErrors that are not about the network (a closed pipe: ``lstm-pipeline generate | head``)
_NOT_NETWORK = frozenset({("builtins", "BrokenPipeError")})
_OFFLINE_VALUES = ("1", "on", "yes", "true")


def is_network_error(exc: BaseException) -> bool:
    names = [(c.__module__.split(".")[0], c.__name__) for c in type(exc).__mro__]
    return not _NOT_NETWORK.intersection(names) and bool(NETWORK_ERRORS.intersection(names))


def network_errors(exc: BaseException) -> list[BaseException]:
    """The exceptions in ``exc``'s chain (outermost first) that say the network could not be reached;
    empty if none. The chain follows ``__cause__`` (``raise ... from``) and, out of an OSError only,
    ``__context__``: a bug raised while handling a connection failure is not a connection failure."""
    found, seen, e = [], set(), exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if is_network_error(e):
            found.append(e)
        if e.__cause__ is not None:
            e = e.__cause__
        elif not e.__suppress_context__ and isinstance(e, OSError):
            e = e.__context__
        else:
            e = None
    return found


def _request_of(errors: list[BaseException]) -> str | None:
    for e in errors:  # httpx/requests errors carry the request (httpx raises if it has none)
        try:
            request = getattr(e, "request", None)
        except Exception:
            request = None
        url = getattr(request, "url", None)
        if url:
            method = getattr(request, "method", None)
            return f"{method} {url}" if method else str(url)
    return None


def network_error_details(exc: BaseException) -> str:
    """``<Type>: <message>`` of ``exc``, then of the root connection failure and the request it was
    making, where those add something: ``ValueError: ...; ConnectError: [Errno 111] Connection refused;
    POST http://127.0.0.1:9/api/repos/create``."""
    def describe(e):
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__

    errors = network_errors(exc)
    text = describe(exc)
    if errors and errors[-1] is not exc and str(errors[-1]) not in text:
        text += f"; {describe(errors[-1])}"
    request = _request_of(errors)
    if request and request.split(" ")[-1] not in text:
        text += f"; {request}"
    return text


def _hub_endpoint() -> str:
    constants = sys.modules.get("huggingface_hub.constants")  # imported by whatever failed to connect
    return str(getattr(constants, "ENDPOINT", None) or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")


def _unreachable(errors: list[BaseException]) -> str:
    """What could not be reached: the host of the failed request if that is not the Hub, else the Hub."""
    from urllib.parse import urlsplit

    endpoint = _hub_endpoint()
    request = _request_of(errors)
    if request:
        url = urlsplit(request.split(" ")[-1])
        host = url.hostname or ""
        hub = urlsplit(endpoint).hostname or ""
        if host != hub and not any(host == h or host.endswith("." + h) for h in ("huggingface.co", "hf.co")):
            return f"{url.scheme}://{url.netloc}"
        return f"the Hugging Face Hub ({endpoint})"
    return f"the Hugging Face Hub ({endpoint}) or the network"


def network_error_message(exc: BaseException) -> str:
    """What a command prints when the network could not be reached: what failed, then what to do."""
    details = network_error_details(exc)
    where = _unreachable(network_errors(exc))
    offline = [v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
               if os.environ.get(v, "").strip().lower() in _OFFLINE_VALUES]
    local = "or use local files instead (data=text data.path=<file>, or data=files)"
    if offline or "OfflineModeIsEnabled" in details:
        state = (" and ".join(f"{v}=1" for v in offline) + (" is set" if len(offline) == 1 else " are set")
                 if offline else "offline mode is on")
        return (f"Could not reach the Hugging Face Hub ({details}): {state} and this is not in the local "
                f"cache. Download it once while online (unset {', '.join(offline) or 'HF_HUB_OFFLINE'}), {local}.")
    return (f"Could not reach {where} ({details}). Check the network connection "
            f"(and HF_ENDPOINT or proxy settings if set); to work offline, set HF_HUB_OFFLINE=1 to use what is in "
            f"the local Hugging Face cache, {local}.")
