"""The fake OpenStack's Nova v2.1: version discovery, servers, instance actions, limits."""
from __future__ import annotations

import json
import re
import uuid
from typing import Tuple

from .openstack_wire import (INTERNAL_HOST, MAX_LIMIT, HttpError, iso, next_query, page_after_marker, parse_iso,
                             project_visible, sample)

NOVA_MAX_MICROVERSION = "2.96"


def _nova_version(base, top=NOVA_MAX_MICROVERSION):
    return {"id": "v2.1", "status": "CURRENT", "version": top,
            "min_version": "2.1", "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{base}/compute/v2.1/"}]}


def versions(rest, base, fake):
    if rest == "/":
        return 200, {}, {"versions": [_nova_version(base, fake.nova_max_microversion)]}
    if rest == "/v2.1":
        return 200, {}, {"version": _nova_version(base, fake.nova_max_microversion)}
    return None


_ACTIONS_PATH = re.compile(r"^/v2\.1/servers/([^/]+)/os-instance-actions$")


def _microversion(fake, service) -> Tuple[int, int]:
    """The microversion a request asked for ("OpenStack-API-Version: compute 2.58"); 2.1 when none."""
    raw = fake.request_headers().get("OpenStack-API-Version") or ""
    parts = raw.split()
    if len(parts) == 2 and parts[0] == service:
        major, minor = parts[1].split(".")
        return int(major), int(minor)
    return 2, 1


def serve(fake, rest, query, base, link):
    if rest == "/v2.1/servers/detail":
        return _nova_servers(fake, query, base, link)
    m = _ACTIONS_PATH.match(rest)
    if m:
        return _nova_actions(fake, m.group(1), query)
    if rest == "/v2.1/limits":
        return 200, {}, {"limits": {"rate": [], "absolute": {
            "maxServerMeta": 128, "maxPersonality": 5, "maxPersonalitySize": 10240,
            "maxImageMeta": 128, "maxTotalInstances": 10, "maxTotalCores": 20,
            "maxTotalRAMSize": 51200, "maxServerGroups": 10, "maxServerGroupMembers": 10,
            "totalInstancesUsed": len(fake.listing("servers")[0]), "totalCoresUsed": 0,
            "totalRAMUsed": 0, "totalServerGroupsUsed": 0}}}
    raise HttpError(404)


def _nova_server(oid, o, base):
    """A server in the shape of Nova's api-ref sample (v2.96 servers-details-resp.json)."""
    doc = json.loads(json.dumps(sample("nova-v2.96-servers-details-resp.json")["servers"][0]))
    image = o.get("image", "")
    image_ref = {"id": image, "links": [{"rel": "bookmark", "href": f"{base}/compute/images/{image}"}]} \
        if image else ""      # boot from volume: Nova returns an empty string
    doc.update({"id": oid, "name": o.get("name"), "status": o.get("status", "ACTIVE"),
                "tenant_id": o["project"], "image": image_ref,
                "created": iso(o["created_at"]), "updated": iso(o["updated_at"]),
                "links": [{"rel": "self", "href": f"{base}/compute/v2.1/servers/{oid}"}],
                "OS-EXT-STS:task_state": o.get("task_state"),
                "OS-EXT-STS:vm_state": o.get("vm_state", "active"),
                "os-extended-volumes:volumes_attached": [
                    {"id": v, "delete_on_termination": False} for v in o.get("volumes", [])]})
    return doc


def _nova_servers(fake, query, base, link):
    objs, order = fake.listing("servers")
    ids = [i for i in order if project_visible(fake, objs[i], query, "all_tenants")]
    page, limit, more = page_after_marker(ids, query, MAX_LIMIT)
    doc = {"servers": [_nova_server(i, objs[i], base) for i in page]}
    if more or link == "page_loop":
        href = f"{INTERNAL_HOST}/v2.1/servers/detail?" + next_query(query, page, limit, link)
        doc["servers_links"] = [{"rel": "next", "href": href}]
    return 200, {}, doc


def _nova_actions(fake, server_id, query):
    """GET /servers/{id}/os-instance-actions as Nova answers it (v2.58 sample shape).

    Newest first; changes-since (2.58+) keeps actions updated at or after it.
    A server's ``actions`` are {"action", "start", "end", "error"} (start and
    end are scenario times: offsets from the step). message is "Error" when an event
    of the action failed (nova.db action_event_finish).
    """
    version = _microversion(fake, "compute")
    top = tuple(int(part) for part in fake.nova_max_microversion.split("."))
    if version > top:
        raise HttpError(406, f"Version {version[0]}.{version[1]} is not supported by the API.")
    srv = fake.listing("servers")[0].get(server_id)
    if srv is None or not project_visible(fake, srv, {}, "all_tenants"):
        raise HttpError(404, f"Instance {server_id} could not be found.")
    template = sample("nova-v2.58-instance-actions-list-resp.json")["instanceActions"][0]
    since = query.get("changes-since")
    if since is not None and version < (2, 58):
        raise HttpError(400, "Additional properties are not allowed ('changes-since' was unexpected)")
    actions = []
    for i, a in enumerate(srv.get("actions") or ()):
        begun, ended = a["start"], a.get("end", a["start"])
        if begun > fake.clock():
            continue
        doc = dict(template)
        doc.update({"action": a["action"], "instance_uuid": server_id, "project_id": srv["project"],
                    "request_id": f"req-{uuid.UUID(int=i + 1)}", "message": "Error" if a.get("error") else None,
                    "start_time": iso(begun, naive_micro=True), "updated_at": iso(ended, naive_micro=True)})
        if version < (2, 58):
            doc.pop("updated_at", None)
        if since is None or ended >= parse_iso(since):
            actions.append((begun, doc))
    actions.sort(key=lambda t: t[0], reverse=True)
    return 200, {}, {"instanceActions": [d for _, d in actions]}
