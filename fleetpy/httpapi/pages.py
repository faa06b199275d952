"""fleet's page tokens and pagination. Pure.

A token is base64url (with padding) of two little-endian uint16: the page size
("token_limit", 100 by default) and the 1-based page number. A token whose
size is not the server's, or whose page is 0, is refused. As in fleet, a page
that ends exactly at the last entry still gives a token (its next page is empty).
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Sequence
from typing import TypeVar

TOKEN_LIMIT = 100
T = TypeVar("T")


class BadToken(ValueError):
    pass


def encode_token(limit: int, page: int) -> str:
    return base64.urlsafe_b64encode(struct.pack("<HH", limit, page)).decode("ascii")


def decode_token(value: str, limit: int) -> int:
    """The page number of a token. Raises BadToken naming the problem."""
    try:
        raw = base64.b64decode(value.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise BadToken("invalid value of nextPageToken query parameter") from None
    if len(raw) < 4:
        raise BadToken("invalid value of nextPageToken query parameter")
    got_limit, page = struct.unpack("<HH", raw[:4])
    if got_limit != limit:
        raise BadToken(f"token limit must be {limit}")
    if page == 0:
        raise BadToken("token page must be greater than zero")
    return int(page)


def page_of(items: Sequence[T], page: int, limit: int) -> tuple[list[T], str | None]:
    """The entries of ``page`` and the token of the next page (None when done)."""
    start, stop = (page - 1) * limit, page * limit
    if start >= len(items):
        return [], None
    if stop > len(items):
        return list(items[start:]), None
    return list(items[start:stop]), encode_token(limit, page + 1)
