"""Output URLs that lapse (``output_url_ttl``), as an S3 bucket's presigned URLs do.

Where the provider's output files are hosted is not known (images.segmind.com and S3 hosts have
been seen). A presigned URL carries its own end time and a signature; past that time the host
answers 403 ``Request has expired`` although the file is still there, and only a new URL (a new
poll of the job) reaches it. The emulator signs with a key of its own, made when it starts: an
emulator restarted on the same state folder refuses the URLs the last one handed out, as a host
whose signing key was rotated does.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping

_EXPIRED = (
    "<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>AccessDenied</Code>"
    "<Message>Request has expired</Message></Error>"
)
_DENIED = (
    "<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>AccessDenied</Code>"
    "<Message>Access Denied</Message></Error>"
)


class UrlSigner:
    """Signs output URLs with an end time, and checks them when they are fetched."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else os.urandom(16)

    def _signature(self, request_id: str, name: str, expires: int) -> str:
        message = f"{request_id}/{name}/{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def query(self, request_id: str, name: str, expires: int) -> str:
        """The query string of a URL to this output good until ``expires`` (wall clock, s)."""
        return f"Expires={expires}&Signature={self._signature(request_id, name, expires)}"

    def refusal(self, request_id: str, name: str, query: Mapping[str, str], now: float) -> str | None:
        """The 403 body for a fetch of this output at ``now``, or None if its URL is good."""
        try:
            expires = int(query.get("Expires", ""))
        except ValueError:
            return _DENIED
        given = query.get("Signature", "")
        if not hmac.compare_digest(given, self._signature(request_id, name, expires)):
            return _DENIED
        return _EXPIRED if now >= expires else None
