"""What every cloud source does with HTTP answers and failures, written once.

A source runs each step of a refresh inside `step(what, classify)`; whatever
the step raises leaves it as a SourceError with a fixed reason and a message
built from safe parts. `classify` is the provider's: it knows its SDK's
exceptions and returns a `Failure`, or None when the exception is not the
API's doing. The rest is one rule for every provider:

- Code that reads an answer's fields runs inside `reading()`: a KeyError,
  TypeError, ValueError or AttributeError there is the answer's shape,
  reason `malformed`. A source may also raise `Malformed` itself; one
  anywhere in the exception's chain (e.g. http_deadline.ResponseTooLarge,
  wrapped by an SDK) is `malformed` whatever else the SDK made of it.
- Anything else the provider does not recognise is our own bug: reason
  `other`, the message names the exception type only (never its text, which
  can carry the API's words), and the traceback is logged once, at debug.
"""
from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, TypeVar
from urllib.parse import urlsplit

from ..errors import SourceError

log = logging.getLogger(__name__)

T = TypeVar("T")
DATA_ERRORS = (KeyError, TypeError, ValueError, AttributeError)


class Malformed(Exception):
    """An answer that does not have the documented shape; the message is ours, safe to show."""


@dataclass(frozen=True)
class Failure:
    reason: str                        # one of SourceError.REASONS
    detail: str                        # safe: request line, status, fixed words
    retry_after: Optional[float] = None


Classifier = Callable[[BaseException], Optional[Failure]]


def status_reason(status: int) -> str:
    """The refresh-error reason of an HTTP status."""
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "rate_limited"
    if 400 <= status < 500:
        return "http_4xx"
    if status >= 500:
        return "http_5xx"
    return "other"


def retry_after(headers) -> Optional[float]:
    """Seconds a 429 or 503 asked us to wait, for the poller's backoff; None when absent
    or an HTTP date (the poller's own backoff applies then)."""
    try:
        return float((headers or {}).get("Retry-After"))
    except (TypeError, ValueError):
        return None


def request_line(method: Optional[str], url: Optional[str]) -> str:
    """"GET /v4/images?page=2": method, path and query; never the host, headers or credentials."""
    if not method and not url:
        return "request"
    parts = urlsplit(url or "")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return f"{method or 'request'} {path}".strip()


def chain(exc: Optional[BaseException]) -> list:
    """exc, then what it was raised from or while handling, innermost last."""
    out: list = []
    while exc is not None and exc not in out and len(out) < 20:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def source_error(what: str, exc: BaseException, classify: Classifier, secret: str = "") -> SourceError:
    """The SourceError one failed step becomes (the module's rule, above)."""
    bad_answer = next((e for e in chain(exc) if isinstance(e, Malformed)), None)
    failure = Failure("malformed", str(bad_answer)) if bad_answer is not None else classify(exc)
    if failure is None:
        log.debug("%s: unexpected %s, a bug in the exporter", what, type(exc).__name__, exc_info=exc)
        failure = Failure("other", f"unexpected {type(exc).__name__} (a bug; traceback at debug level)")
    detail = failure.detail
    if failure.retry_after is not None:
        detail += f" (Retry-After {failure.retry_after:g} s)"
    message = f"{what}: {detail}"
    if secret:      # belt and braces: no message carries the token, even if an API error echoed it
        message = message.replace(secret, "<token>")
    return SourceError(failure.reason, message, retry_after=failure.retry_after)


@contextlib.contextmanager
def step(what: str, classify: Classifier, secret: str = "") -> Iterator[None]:
    """Run one step of a refresh; whatever it raises becomes a SourceError."""
    try:
        yield
    except SourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure must become a SourceError
        raise source_error(what, exc, classify, secret) from None


def call(what: str, fn: Callable[[], T], classify: Classifier, secret: str = "") -> T:
    with step(what, classify, secret):
        return fn()


@contextlib.contextmanager
def reading() -> Iterator[None]:
    """Around code that reads an answer's fields: a data error there is the answer's shape."""
    try:
        yield
    except json.JSONDecodeError:
        raise Malformed("the answer is not valid JSON") from None
    except DATA_ERRORS as e:
        raise Malformed(f"unexpected data ({type(e).__name__})") from None
