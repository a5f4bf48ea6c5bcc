"""Secrets never reach a file: URL credentials are redacted and key-like values are refused where a name belongs.

A build writes its config and report (``realign_build.json``, ``build_report.json``, the work files under
``.realign-build``), ``push`` uploads them with a dataset card, and ``realign-trl eval`` records its settings
(``eval_results.json``, ``answers_settings.json``). The API key itself is only ever read from the environment
variable named by ``--api-key-env``; what may still carry a secret is a URL: ``http://user:KEY@host/v1``,
``http://host/v1?api-key=KEY`` or ``...#token=KEY``. :func:`redact_url` is the one function that removes them
(userinfo, the value of every query parameter that is not known to be harmless, the fragment), and
:func:`redact_tree` applies it to every URL inside a JSON-like object before it is written. A key pasted as the
``--api-key-env`` value is refused (:func:`check_env_name`).
"""

from __future__ import annotations

import re
from typing import Any, Optional
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY_PREFIXES = ("sk-", "sk_", "hf_", "ghp_", "gsk_", "xai-", "AIza", "Bearer ")


# query parameters whose values are kept: they select an API version or a format, never authenticate
_HARMLESS_PARAMS = {
    "api-version",
    "api_version",
    "version",
    "v",
    "format",
    "model",
    "deployment",
    "region",
    "lang",
    "locale",
    "stream",
    "revision",
}
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]{}`]+")
MASK = "***"


def redact_url(url: Optional[str]) -> Optional[str]:
    """``url`` without credentials: the userinfo (``user:password@``) becomes ``***@``, the value of each query
    parameter becomes ``***`` unless the parameter is known to be harmless (``api-version``, ``format``, ...) and its
    value does not look like a key, and a fragment becomes ``#***`` unless it is a plain anchor (``#usage``).
    Anything else is unchanged; text that is not a URL is returned as is."""
    if not url or ("@" not in url and "?" not in url and "#" not in url):
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # unparseable (brackets that do not close): keep only the scheme
        return url.split("://", 1)[0] + f"://{MASK}" if "://" in url else MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        kept = []
        for part in query.split("&"):
            name, eq, _ = part.partition("=")
            pairs = parse_qsl(part, keep_blank_values=True)
            if not eq or not pairs:  # not a name=value pair: the whole part may be a token
                kept.append(MASK)
            else:
                k, v = pairs[0]
                kept.append(f"{name}=" + (quote(v, safe="-_.:") if _harmless(k, v) else MASK))
        query = "&".join(kept)
    fragment = parts.fragment if _anchor(parts.fragment) else MASK
    return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=fragment))


def _randomish(value: str) -> bool:
    return len(value) >= 16 and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def _harmless(name: str, value: str) -> bool:
    """A value kept in a written URL: of a known harmless parameter, short, and not a run of letters and digits."""
    return (
        name.lower() in _HARMLESS_PARAMS
        and len(value) <= 32
        and not _randomish(value)
        and not value.startswith(_KEY_PREFIXES)
    )


def _anchor(fragment: str) -> bool:
    """A fragment kept: empty, or a plain anchor (``#usage``), not ``#access_token=...`` nor a key-like run."""
    return not fragment or (
        "=" not in fragment
        and "&" not in fragment
        and len(fragment) <= 32
        and not _randomish(fragment)
        and not fragment.startswith(_KEY_PREFIXES)
    )


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url` (error messages, free text)."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: redact_url(m.group(0)) or "", text)


def redact_tree(obj: Any) -> Any:
    """A copy of a JSON-like object (dicts, lists, strings) with every URL in every string redacted
    (:func:`redact_text`): what a command writes to a file passes through here."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return {k: redact_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_tree(v) for v in obj]
    return obj


def looks_like_key(value: str) -> bool:
    """Whether ``value`` looks like a secret rather than an environment variable's name."""
    if value.startswith(_KEY_PREFIXES) or not _ENV_NAME.match(value):
        return True
    # names are short words joined by '_' (OPENAI_API_KEY); keys are long runs of mixed letters and digits
    return len(value) >= 20 and "_" not in value and any(c.isdigit() for c in value) and any(c.islower() for c in value)


def check_env_name(value: str, flag: str = "--api-key-env") -> Optional[str]:
    """One sentence when ``value`` is not a usable variable name (a key pasted in its place), else None. The value
    itself is never repeated in the message."""
    if looks_like_key(value):
        return (
            f"{flag} takes the name of an environment variable (e.g. OPENAI_API_KEY), and this value looks like "
            f"a key: pass the variable's name, not the key (export MY_KEY=...; {flag} MY_KEY)"
        )
    return None


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every non-empty ``secrets`` value replaced by ``***`` and every URL redacted (error messages
    that may echo one)."""
    for s in secrets:
        if s:
            text = text.replace(s, MASK)
    return redact_text(text)
