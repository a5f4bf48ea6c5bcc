"""Failures talking to the Hub, said in one sentence: :class:`HubPushError` (the Hub side, with the HTTP status),
:class:`HubUsageError` (a bad argument) and :func:`explain_hub_error`, which turns any exception of a push or a
fetch into a :class:`HubPushError` naming the status and what to do."""

from __future__ import annotations

from typing import Optional

from realign_data.runtime.hub_deadline import current_timeout, timed_out


class HubPushError(RuntimeError):
    """A push (or a fetch) failed on the Hub side. ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


class HubUsageError(ValueError):
    """A bad argument: missing directory, not a dataset, malformed repo id, bad config name."""


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def explain_hub_error(exc: BaseException, repo_id: str, action: str = "push to") -> HubPushError:
    """One clear sentence for a failure talking to the Hub (HTTP status + what to do)."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    endpoint = _endpoint()
    if timed_out(exc) and current_timeout() is not None:
        return HubPushError(
            f"could not {action} {repo_id}: the Hub at {endpoint} did not answer within {current_timeout():g} s "
            "(--timeout); check the network and HF_ENDPOINT (or give a slow link a larger --timeout), then run the "
            "same command again; the local dataset was not modified and a re-push replaces any partial upload."
        )
    for e in _chain(exc):
        if isinstance(e, OfflineModeIsEnabled):
            return HubPushError(
                f"cannot {action} {repo_id}: offline mode is on (HF_HUB_OFFLINE=1); unset it and run the command again."
            )
        if isinstance(e, HfHubHTTPError) and getattr(e, "response", None) is not None:
            status = e.response.status_code
            server = (e.response.headers.get("X-Error-Message") or "").strip()
            detail = f" (server says: {server})" if server else ""
            if status == 401:
                msg = (
                    f"the Hub at {endpoint} rejected the token (HTTP 401){detail}: run `hf auth login` with a "
                    "token that has write access, or pass --token / set HF_TOKEN."
                )
            elif status == 403:
                msg = (
                    f"the token may not write to {repo_id} (HTTP 403){detail}: use a token with write access "
                    "to that namespace (fine-grained tokens need 'write' on the repo or organisation)."
                )
            elif status == 404:
                msg = (
                    f"{repo_id} (or its branch) was not found on {endpoint} (HTTP 404){detail}: check the "
                    "repo id, the namespace (your user or an organisation you belong to) and --revision."
                )
            elif status == 429:
                msg = (
                    f"the Hub is rate limiting this account (HTTP 429){detail}: wait a few minutes and run the "
                    "same command again (a re-push replaces the shards of the split, it never duplicates rows)."
                )
            elif status == 412 or status == 409:
                msg = f"another commit landed on {repo_id} during the push (HTTP {status}): run the same command again."
            elif status >= 500:
                msg = (
                    f"the Hub had a server error (HTTP {status}){detail}: try again in a few minutes; "
                    "https://status.huggingface.co shows incidents."
                )
            else:
                msg = f"the Hub answered HTTP {status}{detail}."
            return HubPushError(f"could not {action} {repo_id}: {msg}", status=status)
    for e in _chain(exc):
        mod = type(e).__module__ or ""
        if mod.startswith(("httpx", "httpcore", "h11", "urllib3", "requests")) or isinstance(
            e, (ConnectionError, TimeoutError)
        ):
            return HubPushError(
                f"could not {action} {repo_id}: the connection to the Hub at {endpoint} failed or was lost "
                f"({type(e).__name__}: {e}). Check the network (and HF_ENDPOINT), then run the same command again; "
                "the local dataset was not modified and a re-push replaces any partial upload."
            )
    return HubPushError(f"could not {action} {repo_id}: {type(exc).__name__}: {exc}")
