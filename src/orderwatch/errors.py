"""The whole exception tree of orderwatch. Every message says what went wrong and what to do.

OrderwatchError                      base class; ``str(err)`` is one actionable line, never a secret
├── ConfigError                      bad configuration (exit code 2); ``problems`` holds one line per problem
├── SourceError                      a source could not be polled; the sweep is incomplete, nothing inferred
│   ├── TransportError               connection refused/reset, DNS, TLS, timeout (retryable)
│   ├── HTTPStatusError              an unexpected HTTP status (``retryable`` for 408/409/429/5xx)
│   │   └── AuthError                401/403: the token was rejected; fix the token, retrying will not help
│   ├── MalformedResponse            the body is not the documented shape (HTML, truncated JSON, wrong keys…)
│   ├── ErrorBody                    HTTP 200 carrying an error (Lsky ``{"status": "error"}``)
│   └── LimitExceeded                response bytes, pages per sweep or the poll's time budget ran out
├── StoreError                       the database cannot be read or written (full disk, read-only, locked)
│   └── SchemaTooNew                 a newer orderwatch migrated the database: upgrade orderwatch
└── DeliveryError                    a notification could not be delivered; ``permanent`` says if a retry can help
"""

from __future__ import annotations


class OrderwatchError(Exception):
    """Base class of every error orderwatch raises on purpose."""


class ConfigError(OrderwatchError):
    """The configuration is invalid. ``problems`` has one line per problem, each naming the key and the value."""

    def __init__(self, problems: list[str] | str, *, path: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.path = path
        where = f"{path}: " if path else ""
        super().__init__(where + "; ".join(self.problems))


class SourceError(OrderwatchError):
    """A source could not be polled completely. ``retryable`` says whether trying again soon can help."""

    retryable = True

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        self.message = message
        super().__init__(f'source "{source}": {message}')


class TransportError(SourceError):
    """The request did not get an HTTP answer (connection, DNS, TLS, timeout)."""


class HTTPStatusError(SourceError):
    """The server answered with an unexpected HTTP status."""

    def __init__(self, source: str, status: int, message: str, *, retry_after: float | None = None) -> None:
        self.status = status
        self.retry_after = retry_after
        self.retryable = status in {408, 409, 425, 429} or status >= 500
        super().__init__(source, message)


class AuthError(HTTPStatusError):
    """The source rejected the token (401/403). Retrying will not help until the token is fixed."""

    def __init__(self, source: str, status: int, message: str) -> None:
        super().__init__(source, status, message)
        self.retryable = False


class MalformedResponse(SourceError):
    """The answer does not have the documented shape."""


class ErrorBody(SourceError):
    """The server said HTTP 200 but the body carries an error."""


class LimitExceeded(SourceError):
    """A safety cap (response size, pages per sweep, time budget) was reached; the sweep is incomplete."""

    retryable = False


class StoreError(OrderwatchError):
    """The database cannot be used. Polling stops for the affected source rather than dropping events."""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer orderwatch; this version cannot use it. ``migrations`` names the steps
    it does not know."""

    def __init__(self, path: str, migrations: list[str]) -> None:
        self.path = path
        self.migrations = list(migrations)
        super().__init__(
            f"database {path} was migrated by a newer orderwatch (schema step {', '.join(self.migrations)}, which"
            " this version does not know): upgrade orderwatch to use it, or point `database` at another file"
        )


class DeliveryError(OrderwatchError):
    """A notification could not be delivered. ``permanent`` is True when retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        self.permanent = permanent
        super().__init__(message)
