"""Keys of the ``client_orders`` JetStream KV bucket: ``<user>.<client_order_id>``.

KV keys allow only ``[-/_=.A-Za-z0-9]`` and use ``.`` as a token separator, while user ids and
client order ids are free text. :func:`client_order_key` escapes each part injectively: ``A-Z``,
``a-z``, ``0-9``, ``-`` and ``_`` stay as they are, every other UTF-8 byte becomes ``=XX``
(uppercase hex) and an empty part becomes ``=``. So distinct ``(user, client_order_id)`` pairs
always give distinct keys and the single ``.`` separates the two parts unambiguously.
"""

from __future__ import annotations

import re

__all__ = ["client_order_key", "escape_key_part"]

_SAFE = re.compile(r"[A-Za-z0-9_-]*")


def escape_key_part(text: str) -> str:
    """``text`` as one KV key token (see the module docstring); never empty, never has ``.``."""
    if not text:
        return "="
    if _SAFE.fullmatch(text):
        return text
    out: list[str] = []
    for ch in text:
        if ch.isascii() and (ch.isalnum() or ch in "-_"):
            out.append(ch)
        else:
            out.extend(f"={b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


def client_order_key(user: str, client_order_id: str) -> str:
    """The ``client_orders`` key of ``client_order_id`` submitted by ``user``."""
    return f"{escape_key_part(user)}.{escape_key_part(client_order_id)}"
