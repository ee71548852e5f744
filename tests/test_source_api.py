"""exporter.sources.api: the one failure rule every cloud source follows."""
from __future__ import annotations

import logging

import pytest

from exporter.errors import SourceError
from exporter.sources import api


def nothing_known(exc):
    return None


def failing_step(exc, classify=nothing_known, secret=""):
    with pytest.raises(SourceError) as e:
        with api.step("listing things", classify, secret):
            raise exc
    return e.value


@pytest.mark.parametrize("status,reason", [(401, "auth"), (403, "auth"), (429, "rate_limited"), (404, "http_4xx"),
                                           (500, "http_5xx"), (503, "http_5xx"), (302, "other")])
def test_status_reasons(status, reason):
    assert api.status_reason(status) == reason


@pytest.mark.parametrize("headers,seconds", [({"Retry-After": "120"}, 120.0), ({"Retry-After": "0.5"}, 0.5),
                                             ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None), ({}, None),
                                             (None, None)])
def test_retry_after_takes_seconds_only(headers, seconds):
    assert api.retry_after(headers) == seconds


def test_request_line_has_no_host_or_credentials():
    line = api.request_line("GET", "https://user:secret@api.example.com:8443/v4/images?page=2")
    assert line == "GET /v4/images?page=2"
    assert api.request_line(None, None) == "request"


def test_our_own_bug_is_other_without_its_text_and_logged_once_at_debug(caplog):
    caplog.set_level(logging.DEBUG, logger="exporter.sources.api")
    err = failing_step(TypeError("the API said: internal host db-7.corp"))
    assert err.reason == "other"
    assert str(err) == "listing things: unexpected TypeError (a bug; traceback at debug level)"
    (record,) = [r for r in caplog.records if r.name == "exporter.sources.api"]
    assert record.levelno == logging.DEBUG and record.exc_info and "db-7.corp" not in record.getMessage()


def test_data_errors_while_reading_an_answer_are_malformed():
    with pytest.raises(SourceError) as e:
        with api.step("reading agents", nothing_known), api.reading():
            {}["MachineAgentId"]
    assert (e.value.reason, str(e.value)) == ("malformed", "reading agents: unexpected data (KeyError)")
    with pytest.raises(SourceError) as e:
        with api.step("reading agents", nothing_known), api.reading():
            __import__("json").loads("{not json")
    assert str(e.value) == "reading agents: the answer is not valid JSON"


def test_the_providers_classification_wins_and_carries_retry_after():
    err = failing_step(RuntimeError("x"), lambda exc: api.Failure("rate_limited", "GET /images: HTTP 429", 30.0))
    assert (err.reason, err.retry_after) == ("rate_limited", 30.0)
    assert str(err) == "listing things: GET /images: HTTP 429 (Retry-After 30 s)"


def test_the_token_never_reaches_a_message():
    err = failing_step(RuntimeError(), lambda exc: api.Failure("auth", "HTTP 401 Bearer s3cr3t"), secret="s3cr3t")
    assert "s3cr3t" not in str(err) and "<token>" in str(err)
