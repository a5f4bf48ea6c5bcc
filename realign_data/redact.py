"""Secrets never reach a file: URL credentials are redacted and key-like values are refused where a name belongs.

A build writes its config and report (``realign_build.json``, ``build_report.json``), and ``push`` uploads both.
The API key itself is only ever read from the environment variable named by ``--api-key-env``; what may still
carry a secret is a ``--base-url http://user:KEY@host/v1`` (its userinfo is replaced by ``***`` in everything
written) or a key pasted as the ``--api-key-env`` value (refused: :func:`check_env_name`).
"""

from __future__ import annotations

import re
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY_PREFIXES = ("sk-", "sk_", "hf_", "ghp_", "gsk_", "xai-", "AIza", "Bearer ")


def redact_url(url: Optional[str]) -> Optional[str]:
    """``url`` with its userinfo (``user:password@``) replaced by ``***@``; anything else unchanged."""
    if not url or "@" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def looks_like_key(value: str) -> bool:
    """Whether ``value`` looks like a secret rather than an environment variable's name."""
    if value.startswith(_KEY_PREFIXES) or not _ENV_NAME.match(value):
        return True
    # names are short words joined by '_' (OPENAI_API_KEY); keys are long runs of mixed letters and digits
    return len(value) >= 20 and "_" not in value and any(c.isdigit() for c in value) and \
        any(c.islower() for c in value)


def check_env_name(value: str, flag: str = "--api-key-env") -> Optional[str]:
    """One sentence when ``value`` is not a usable variable name (a key pasted in its place), else None. The value
    itself is never repeated in the message."""
    if looks_like_key(value):
        return (f"{flag} takes the name of an environment variable (e.g. OPENAI_API_KEY), and this value looks like "
                f"a key: pass the variable's name, not the key (export MY_KEY=...; {flag} MY_KEY)")
    return None


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every non-empty ``secrets`` value replaced by ``***`` (error messages that may echo one)."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text
