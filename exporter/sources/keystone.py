"""Failures of keystoneauth1 and openstacksdk, classified for exporter.sources.api.

Shared by the providers that reach their API through a keystoneauth session
(openstack, rackspace_backup). Never str(exc): the SDKs' messages can carry
URLs, bodies and headers; details are built from safe parts only.
"""
from __future__ import annotations

from typing import Optional

from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as sdk_exc
import requests
import urllib3

from . import api


def classifier(timeout: float, cloud: str) -> api.Classifier:
    """classify(exc) for a cloud whose requests are bounded by `timeout`; `cloud` is its clouds.yaml entry."""
    def classify(exc: BaseException) -> Optional[api.Failure]:
        found = _classify(exc, timeout, cloud)
        return None if found is None else api.Failure(*found, retry_after=_retry_after(exc))
    return classify


def _classify(exc: BaseException, timeout: float, cloud: str):
    """(reason, safe detail), or None when it is not the API's doing.

    keystoneauth wraps the real cause (a refused connection becomes a
    DiscoveryFailure, a body that stalls a ConnectFailure), so the whole
    chain is searched: timeouts first, then connection and HTTP errors.
    """
    chain = api.chain(exc)
    if any(_is_timeout(e) for e in chain):
        return "timeout", f"no answer within {timeout:g}s"
    if any(isinstance(e, ksa_exc.SSLError) for e in chain):
        return "connection", "TLS handshake failed"
    if any(isinstance(e, ksa_exc.ConnectionError) for e in chain):
        return "connection", "cannot connect to the API (refused, reset or unresolvable)"
    for e in chain:
        status = _http_status(e)
        if status:
            return api.status_reason(status), f"HTTP {status} from {api.request_line(e.method, e.url)}"
    for e in chain:
        if isinstance(e, (ksa_exc.EndpointNotFound, sdk_exc.EndpointNotFound, sdk_exc.ServiceDisabledException)):
            return "other", "the service catalog has no endpoint for this service"
        if isinstance(e, sdk_exc.ConfigException):
            return "other", f"cannot load cloud {cloud or '(OS_CLOUD)'} from clouds.yaml or the environment"
        if isinstance(e, ksa_exc.DiscoveryFailure):
            return "malformed", "version discovery found no usable API version"
        if isinstance(e, (sdk_exc.NotSupported, sdk_exc.ServiceDiscoveryException)):
            # openstacksdk logs why discovery failed and raises this without the cause.
            return "other", "version discovery failed (no answer, an error or no supported version)"
    return None


def _is_timeout(exc: BaseException) -> bool:
    # Not urllib3's TimeoutError: NewConnectionError (connection refused) derives from it.
    return isinstance(exc, (ksa_exc.ConnectTimeout, requests.exceptions.Timeout,
                            urllib3.exceptions.ReadTimeoutError, TimeoutError))


def _retry_after(exc: BaseException) -> Optional[float]:
    for e in api.chain(exc):
        response = getattr(e, "response", None)
        if isinstance(e, (sdk_exc.HttpException, ksa_exc.HttpError)) and response is not None:
            return api.retry_after(response.headers)
    return None


def _http_status(exc) -> Optional[int]:
    if isinstance(exc, sdk_exc.HttpException):
        return exc.status_code
    if isinstance(exc, ksa_exc.HttpError):
        return exc.http_status
    return None
