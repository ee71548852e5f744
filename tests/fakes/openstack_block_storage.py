"""The fake OpenStack's Cinder v3: version discovery (v3, v1-only or broken) and volume snapshots."""
from __future__ import annotations

from .openstack_wire import (INTERNAL_HOST, MAX_LIMIT, HttpError, iso, next_query, page_after_marker,
                             project_visible, sample)

CINDER_MAX_MICROVERSION = "3.70"


def _cinder_version(base):
    return {"id": "v3.0", "status": "CURRENT", "version": CINDER_MAX_MICROVERSION,
            "min_version": "3.0", "updated": "2023-08-31T00:00:00Z",
            "links": [{"rel": "self", "href": f"{base}/volume/v3/"}]}


def _cinder_v1(base):
    return {"id": "v1.0", "status": "DEPRECATED", "version": "", "min_version": "",
            "updated": "2016-05-02T20:25:19Z", "links": [{"rel": "self", "href": f"{base}/volume/v1/"}]}


def versions(rest, base, fake):
    if fake.cinder_versions == "broken" and rest in ("/", "/v3", f"/v3/{fake.project_id}"):
        raise HttpError(500, "discovery is broken")
    if fake.cinder_versions == "v1":
        if rest == "/":
            return 300, {}, {"versions": [_cinder_v1(base)]}
        if rest.startswith("/v3"):
            raise HttpError(404)
        return None
    if rest == "/":
        doc = sample("cinder-versions-response.json")
        v = doc["versions"][0]
        v["version"] = CINDER_MAX_MICROVERSION
        v["links"] = [link if link["rel"] != "self" else {"rel": "self", "href": f"{base}/volume/v3/"}
                      for link in v["links"]]
        return 300, {}, doc
    if rest in ("/v3", f"/v3/{fake.project_id}"):
        return 200, {}, {"version": _cinder_version(base)}
    return None


def serve(fake, rest, query, base, link):
    pid = fake.project_id
    if rest == f"/v3/{pid}/snapshots/detail":
        return _cinder_snapshots(fake, query, base, link)
    raise HttpError(404)


def _cinder_snapshot(oid, o):
    """A snapshot in the shape of Cinder's api-ref sample (v3.65 snapshots-list-detailed-response.json)."""
    doc = dict(sample("cinder-v3.65-snapshots-list-detailed-response.json")["snapshots"][0])
    doc.update({"id": oid, "name": o.get("name"), "description": None, "status": o.get("status", "available"),
                "size": o.get("size_gb", 10), "volume_id": o.get("volume", ""), "metadata": {},
                "created_at": iso(o["created_at"], naive_micro=True),
                "updated_at": iso(o["updated_at"], naive_micro=True),
                "os-extended-snapshot-attributes:progress": o.get("progress", "100%"),
                "os-extended-snapshot-attributes:project_id": o["project"]})
    return doc


def _cinder_snapshots(fake, query, base, link):
    objs, order = fake.listing("volume_snapshots")
    ids = [i for i in order if project_visible(fake, objs[i], query, "all_tenants")]
    if "status" in query:
        ids = [i for i in ids if objs[i].get("status", "available") == query["status"]]
    page, limit, more = page_after_marker(ids, query, MAX_LIMIT)
    doc = {"snapshots": [_cinder_snapshot(i, objs[i]) for i in page]}
    if more or link == "page_loop":
        pid = fake.project_id
        href = f"{INTERNAL_HOST}/v3/{pid}/snapshots/detail?" + next_query(query, page, limit, link)
        doc["snapshots_links"] = [{"rel": "next", "href": href}]
    return 200, {}, doc
