"""Every error batcher raises, as one tree (after httpx's ``_exceptions.py``).

::

    BatcherError
    ├── UsageError                 your input is wrong: fix it and run again (exit 2)
    │   ├── ConfigError            a setting: names the file, line, key and the fix
    │   ├── ManifestError          a manifest as a whole: missing, unreadable, unknown kind
    │   ├── RowError               one manifest row: file, line, field, fix (the row is skipped)
    │   └── LedgerMismatchError    the ledger was written for another manifest or workflow settings
    ├── LedgerError                the ledger file itself cannot be used
    │   ├── LedgerLockedError      another run holds it (exit 75)
    │   └── LedgerWriteError       a write or fsync failed mid-run: disk full, size limit (exit 74)
    ├── RemoteError                the provider answered, and said no
    │   ├── RateLimited            429; ``retry_after`` seconds when the answer said
    │   ├── ServerError            5xx (or a gateway's HTML page)
    │   ├── BadRequest             400 (or a 2xx error answer with no poll_url): this input is wrong
    │   ├── AuthError              401/403: every request will fail
    │   ├── NotFound               404: unknown workflow (submit) or expired request (poll)
    │   ├── InsufficientCredits    406: credits, spend limit or content type
    │   ├── WrongEndpoint          405 or a redirect: the request cannot be served as sent
    │   ├── UnexpectedStatus       any other HTTP status
    │   └── BadResponse            a 200 whose body is not the JSON we expect
    ├── TransportError             no complete answer at all: the outcome is unknown
    │   ├── ConnectError           could not connect
    │   ├── RequestTimeout         no answer in time
    │   └── ConnectionLost         the connection broke mid-answer
    └── UnsafeError                we refused to do something unsafe
        ├── ForeignHostError       a poll_url outside the credential allow-list
        └── UnsafeOutputError      an output URL, size or name we will not accept

Each error carries the job id (when there is one) and the facts a user needs; none carries the
API key. Code that maps an HTTP answer to these lives in :mod:`batcher.api`; code that maps the
network library's errors lives in :mod:`batcher.transport`.
"""

from __future__ import annotations


class BatcherError(Exception):
    """Base of every batcher error."""

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.job_id = job_id

    def __str__(self) -> str:
        return self.message


# --- your input is wrong -------------------------------------------------------------------


class UsageError(BatcherError):
    """The user's input (flags, config, manifest, ledger choice) is wrong; says how to fix it."""


class ConfigError(UsageError):
    """A setting is wrong. ``source`` is the file (or 'flag'/'environment'), ``key`` the setting."""

    def __init__(
        self,
        message: str,
        *,
        source: str = "",
        key: str = "",
        line: int | None = None,
        fix: str = "",
    ) -> None:
        where = source
        if line is not None:
            where = f"{where}:{line}" if where else f"line {line}"
        parts = [p for p in (where, key) if p]
        text = f"{': '.join(parts)}: {message}" if parts else message
        if fix:
            text = f"{text} ({fix})"
        super().__init__(text)
        #: What is wrong, without where: to say it again with a source and line an outer check knows.
        self.problem = message
        self.source = source
        self.key = key
        self.line = line
        self.fix = fix


class ManifestError(UsageError):
    """A manifest cannot be read at all (missing, unknown extension, unreadable)."""

    def __init__(self, message: str, *, path: str, fix: str = "") -> None:
        text = f"{path}: {message}" + (f" ({fix})" if fix else "")
        super().__init__(text)
        self.path = path
        self.fix = fix


class RowError(UsageError):
    """One manifest row is invalid. The row is recorded as ``invalid`` and skipped; the rest runs."""

    def __init__(
        self,
        message: str,
        *,
        path: str,
        line: int,
        field: str = "",
        fix: str = "",
        job_id: str | None = None,
    ) -> None:
        where = f"{path}:{line}"
        text = f"{where}: {field}: {message}" if field else f"{where}: {message}"
        if fix:
            text = f"{text} ({fix})"
        super().__init__(text, job_id=job_id)
        self.path = path
        self.line = line
        self.field = field
        self.reason = message
        self.fix = fix


class LedgerMismatchError(UsageError):
    """The ledger records a different manifest or different workflow settings than this run."""


# --- the ledger ----------------------------------------------------------------------------


class LedgerError(BatcherError):
    """The ledger file cannot be opened, read or written."""


class LedgerLockedError(LedgerError):
    """Another batcher process holds the ledger's lock."""


class LedgerWriteError(LedgerError):
    """The ledger could not be written or synced (a full disk, a file size limit, an I/O error,
    the file deleted under the run). Nothing more can be recorded, so the run stops at once."""


# --- the remote said no --------------------------------------------------------------------


class RemoteError(BatcherError):
    """The provider answered with an error. ``status`` is the HTTP status (0 when not HTTP)."""

    #: True when trying the same request again later may succeed.
    retryable: bool = False

    def __init__(self, message: str, *, status: int, job_id: str | None = None) -> None:
        super().__init__(message, job_id=job_id)
        self.status = status


class RateLimited(RemoteError):
    """429. ``retry_after`` is seconds from when the answer arrived, if the answer said."""

    retryable = True

    def __init__(
        self, message: str, *, retry_after: float | None, status: int = 429, job_id: str | None = None
    ) -> None:
        super().__init__(message, status=status, job_id=job_id)
        self.retry_after = retry_after


class ServerError(RemoteError):
    """5xx: the provider had trouble. Retried with backoff, a bounded number of times."""

    retryable = True


class BadRequest(RemoteError):
    """400: the input is invalid for this workflow (also a 2xx answer that says the request failed
    and gives no poll_url, naming no other code). The job fails; retrying cannot help."""


class AuthError(RemoteError):
    """401/403: the key is missing, invalid or not allowed. Every request will fail: stop."""


class NotFound(RemoteError):
    """404: the workflow does not exist (submit) or the request record expired (poll)."""


class InsufficientCredits(RemoteError):
    """406: not enough credits, a team spend limit, or a wrong content type."""

    def __init__(
        self,
        message: str,
        *,
        balance: float | None = None,
        required: float | None = None,
        status: int = 406,
        job_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, job_id=job_id)
        self.balance = balance
        self.required = required


class WrongEndpoint(RemoteError):
    """405 (a wrong method, a gateway's HTML page) or a redirect (3xx, never followed with the
    key): the request went to a URL that does not take it. Nothing was started, and every
    request sent the same way gets the same: a wrong ``api.base_url`` or ``api.submit_path``,
    or a bug on our side."""


class UnexpectedStatus(RemoteError):
    """An HTTP status the contract does not describe (418 and friends): likely a bug on our side."""


class BadResponse(RemoteError):
    """A 200 whose body is not the JSON we expect. Retryable: the next answer may be fine."""

    retryable = True


# --- the transport broke -------------------------------------------------------------------


class TransportError(BatcherError):
    """No complete answer arrived; whether the server acted on the request is unknown."""

    retryable = True


class ConnectError(TransportError):
    """Could not connect to the host."""


class RequestTimeout(TransportError):
    """The answer did not arrive in time."""


class ConnectionLost(TransportError):
    """The connection broke before the answer was complete."""


# --- refused as unsafe ---------------------------------------------------------------------


class UnsafeError(BatcherError):
    """batcher refused to do something unsafe."""


class ForeignHostError(UnsafeError):
    """A URL (usually a ``poll_url``) points at a host that may not receive the API key."""


class UnsafeOutputError(UnsafeError):
    """An output URL with a refused scheme, a file over the size cap, or a name we cannot use."""
