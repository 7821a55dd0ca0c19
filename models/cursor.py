"""Opaque list cursors: where a page ended, sealed so that only this app can read or make one.

A cursor holds the last row's sort key and id (a keyset position: page 1,000 costs what
page 1 costs, and a row edited or deleted between two pages does not move the position).
It travels in URLs, access logs and browser history, so it is encrypted and authenticated
with AES-SIV (`cryptography`): the sort key (a title, say) cannot be read, and a cursor
changed by a single bit, made for another user or for another list (other filters or
sort) does not open. AES-SIV needs no nonce: the same position of the same list always
gives the same cursor, and no nonce can be reused by accident.

The key comes from CURSOR_SECRET (settings) when set; otherwise it is derived from the
database URL the session uses, password included: every process of a deploy shares it,
nobody without the database password can make a cursor, and changing either makes the
outstanding cursors invalid (the client asks for the first page again).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import struct
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from models.task import TITLE_MAX, Priority

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
_HEAD = struct.Struct(">Bq")  # what the sort key is, and the row's id
_NULL, _TIME, _PRIORITY, _TITLE = range(4)
_PRIORITIES = list(Priority)
_SIV_TAG = 16
# The longest cursor: a 200-character title of 4-byte UTF-8 characters, base64url.
CURSOR_MAX = -(-(_SIV_TAG + _HEAD.size + 4 * TITLE_MAX) // 3) * 4
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_PURPOSE = b"todo-schema list cursor v1"
SortKey = datetime | Priority | str | None


class BadCursor(ValueError):
    """Not a cursor of this app, this user and this list."""


@functools.lru_cache(maxsize=16)
def _cipher(secret: str) -> AESSIV:
    """AES-256-SIV keyed by a 64-byte key derived from secret (HMAC-SHA512, this purpose)."""
    key = hmac.new(secret.encode("utf-8", "surrogatepass"), _PURPOSE, hashlib.sha512).digest()
    return AESSIV(key)


def seal(secret: str, context: list[bytes], key: SortKey, task_id: int) -> str:
    """The cursor of the position (key, task_id) in the list that context names."""
    if key is None:
        kind, raw = _NULL, b""
    elif isinstance(key, datetime):
        kind, raw = _TIME, struct.pack(">q", (key - EPOCH) // MICROSECOND)
    elif isinstance(key, Priority):
        kind, raw = _PRIORITY, bytes([_PRIORITIES.index(key)])
    else:
        kind, raw = _TITLE, key.encode()
    sealed = _cipher(secret).encrypt(_HEAD.pack(kind, task_id) + raw, context)
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def unseal(secret: str, context: list[bytes], cursor: str) -> tuple[SortKey, int]:
    """(sort key, id) that seal() put in cursor, or BadCursor, whatever the string holds."""
    if len(cursor) > CURSOR_MAX or not _BASE64URL.fullmatch(cursor):
        raise BadCursor("not base64url")
    try:
        sealed = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        plain = _cipher(secret).decrypt(sealed, context)
    except (binascii.Error, ValueError, InvalidTag):
        raise BadCursor("does not open") from None
    kind, task_id = _HEAD.unpack_from(plain)
    raw = plain[_HEAD.size :]
    if kind == _NULL and not raw:
        return None, task_id
    if kind == _TIME and len(raw) == 8:
        return EPOCH + struct.unpack(">q", raw)[0] * MICROSECOND, task_id
    if kind == _PRIORITY and len(raw) == 1 and raw[0] < len(_PRIORITIES):
        return _PRIORITIES[raw[0]], task_id
    if kind == _TITLE:
        return raw.decode(), task_id
    raise BadCursor("unknown content")
