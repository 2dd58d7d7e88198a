"""What a pickled ``BigArray`` leaves behind: secrets.

A ``BigArray`` pickles as its URL and open arguments, so that dask workers, ``DataLoader``
workers and ``multiprocessing`` pools re-open it (docs/CLOUD.md, "Credentials"). Pickles
travel: to other machines, into task graphs that schedulers log and spill to disk. So keys,
tokens and passwords are taken out: storage options that hold a secret value, and the
``user:password@`` of a URL. What names a secret stays (a profile, a key file's path,
``credential_process``), and the worker re-opens with its own environment's credentials
(the same variables, profile files or instance role), as dask and CloudVolume workers do.
"""

from __future__ import annotations

import re
from typing import Any

# Storage options whose value is a secret (object_store's names and their aliases), and
# any key that says so in its name. Paths to key files are not secrets (`*_file`, `*_path`,
# `service_account`).
_SECRET_KEYS = frozenset(
    {
        "aws_access_key_id",
        "access_key_id",
        "aws_secret_access_key",
        "secret_access_key",
        "aws_session_token",
        "session_token",
        "aws_token",
        "token",
        "google_service_account_key",
        "service_account_key",
        "google_bearer_token",
        "bearer_token",
    }
)
_SECRET_WORDS = re.compile(r"secret|password|passwd|customer_key|credential_value")


def is_secret(key: str) -> bool:
    """Whether storage option ``key`` holds a secret value."""
    lower = key.lower()
    if lower.endswith(("_file", "_path")):
        return False
    return lower in _SECRET_KEYS or bool(_SECRET_WORDS.search(lower))


def without_userinfo(url: str) -> str:
    """``url`` without the ``user:password@`` of its authority."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


def for_pickle(url: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any], list[str]]:
    """``url`` and ``kwargs`` with secrets taken out, and the names of what was taken."""
    dropped: list[str] = []
    clean_url = without_userinfo(url)
    if clean_url != url:
        dropped.append("the user:password in the URL")
    options = kwargs.get("storage_options")
    if options:
        kept = {}
        for key, value in options.items():
            if is_secret(str(key)):
                dropped.append(f"storage_options[{str(key)!r}]")
            else:
                kept[key] = value
        kwargs = {**kwargs, "storage_options": kept}
    return clean_url, kwargs, dropped


def note(dropped: list[str]) -> str:
    """What to add to an error a re-opened array raises when secrets were left out."""
    return (
        f"(this array was unpickled without {', '.join(dropped)}: secrets are never pickled; "
        "give the process credentials through its environment, an AWS profile, a key file "
        "path or credential_process, see docs/CLOUD.md)"
    )
