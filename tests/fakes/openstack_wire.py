"""What every fake OpenStack service shares: samples, timestamps, errors, marker/limit pagination."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode

MAX_LIMIT = 1000            # Glance api_limit_max, Nova/Cinder osapi_max_limit
MIB = 1024 * 1024
# Nova and Cinder build next links from their own configured host, often an
# internal name a client cannot reach; the fake does so too.
INTERNAL_HOST = "http://controller.internal.example:8774"
SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "openstack" / "samples"
ERROR_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


def sample(name: str):
    """An official API-reference sample (tests/fixtures/openstack/samples/PROVENANCE.md)."""
    with open(SAMPLES / name, encoding="utf-8") as f:
        return json.load(f)


def iso(ts: float, naive_micro: bool = False) -> str:
    """Glance/Nova write "...Z"; Cinder writes naive UTC with microseconds."""
    dt = datetime.fromtimestamp(ts, timezone.utc)
    if naive_micro:
        return dt.replace(tzinfo=None).isoformat(timespec="microseconds")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value):
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


class HttpError(Exception):
    def __init__(self, status, message=""):
        self.status = status
        self.message = message or ERROR_TITLES.get(status, "Error")


# ---- pagination ---------------------------------------------------------------

def limit_param(query, default):
    raw = query.get("limit")
    if raw is None:
        return min(default, MAX_LIMIT)
    try:
        n = int(raw)
    except ValueError:
        raise HttpError(400, f"limit param must be an integer: {raw!r}") from None
    if n < 0:
        raise HttpError(400, "limit param must be positive")
    return min(n, MAX_LIMIT)


def page_after_marker(ids, query, default_limit):
    """The page after ``marker``, as every OpenStack service does it. -> (page, limit, more)"""
    limit = limit_param(query, default_limit)
    start = 0
    marker = query.get("marker")
    if marker:
        try:
            start = ids.index(marker) + 1
        except ValueError:
            raise HttpError(400, f"marker [{marker}] not found") from None
    page = ids[start:start + limit]
    # The services link a next page whenever the page is full, even when it
    # happens to be the last one (the client then gets an empty page).
    return page, limit, bool(page) and len(page) == limit


def next_query(query, page, limit, link):
    """The next page's query: the request's own filters, limit and marker.

    link "page_loop" drops the marker (back to the first page); "page_overlap" marks
    the page's first item, so the next page repeats items of this one.
    """
    q = {k: v for k, v in query.items() if k not in ("marker", "limit")}
    q["limit"] = str(limit)
    if link != "page_loop" and page:
        q["marker"] = page[0] if link == "page_overlap" else page[-1]
    return urlencode(q)


def project_visible(fake, obj, query, all_projects_key):
    if query.get(all_projects_key) in ("1", "True", "true"):
        if not fake.admin:
            raise HttpError(403, "Policy doesn't allow listing all projects' resources.")
        return True
    return obj["project"] == fake.project_id
