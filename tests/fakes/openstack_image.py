"""The fake OpenStack's Glance v2: version discovery, the images list and /v2/info/usage."""
from __future__ import annotations

import json

from .openstack_wire import MIB, HttpError, iso, next_query, page_after_marker, sample

GLANCE_DEFAULT_LIMIT = 25   # Glance limit_param_default


def versions(rest, base, fake):
    if rest in ("/", "/versions"):
        vs = [{"id": v, "status": "CURRENT" if v == "v2.16" else "SUPPORTED",
               "links": [{"rel": "self", "href": f"{base}/image/v2/"}]}
              for v in ("v2.16", "v2.15", "v2.9", "v2.0")]
        return 300, {}, {"versions": vs}
    return None


def serve(fake, rest, query, base, link):
    if rest == "/v2/images":
        return _glance_images(fake, query, link)
    if rest == "/v2/info/usage":
        return _glance_usage(fake)
    raise HttpError(404)


def _glance_image(oid, o, project_id):
    """An image in the shape of Glance's api-ref sample (images-list-response.json)."""
    doc = dict(sample("glance-images-list-response.json")["images"][0])
    doc.update({"id": oid, "name": o.get("name"), "status": o.get("status", "active"),
                "size": o.get("size"), "virtual_size": None, "checksum": None, "os_hash_algo": None,
                "os_hash_value": None, "visibility": o.get("visibility", "private"),
                "os_hidden": bool(o.get("hidden", False)),
                "owner": o.get("owner", o.get("project", project_id)), "tags": [],
                "created_at": iso(o["created_at"]), "updated_at": iso(o["updated_at"]),
                "self": f"/v2/images/{oid}", "file": f"/v2/images/{oid}/file"})
    # Nova writes these as image properties, which Glance returns as top-level keys.
    if o.get("image_type"):
        doc["image_type"] = o["image_type"]
    if o.get("server"):
        doc["instance_uuid"] = o["server"]
        doc["base_image_ref"] = ""
    if o.get("backup_type"):
        doc["backup_type"] = o["backup_type"]
    if o.get("bdm"):
        # A boot-from-volume server's snapshot (nova.compute.api.snapshot_volume_backed):
        # no instance_uuid, a JSON-encoded block device mapping, size 0.
        doc["bdm_v2"] = "True"
        doc["root_device_name"] = "/dev/vda"
        doc["block_device_mapping"] = json.dumps([
            {"source_type": "snapshot", "destination_type": "volume", "snapshot_id": sid, "boot_index": i,
             "device_name": f"/dev/vd{chr(97 + i)}", "delete_on_termination": False, "volume_size": 10,
             "guest_format": None, "disk_bus": "virtio", "device_type": "disk", "volume_type": None,
             "no_device": None, "tag": None, "volume_id": None, "image_id": None}
            for i, sid in enumerate(o["bdm"])])
    return doc


def _glance_visible(fake, o, query):
    """Glance's list rules for the fake's user: visibility, owner, os_hidden, member_status."""
    pid = fake.project_id
    owner = o.get("owner", o.get("project", pid))
    vis = o.get("visibility", "private")
    mine = owner == pid
    member = pid in (o.get("members") or {})
    if not (fake.admin or mine or vis in ("public", "community") or (vis == "shared" and member)):
        return False
    if "owner" in query and owner != query["owner"]:
        return False
    want_vis = query.get("visibility")
    if want_vis is None:
        # The default list leaves out community images the user does not own.
        if vis == "community" and not mine:
            return False
    elif want_vis != "all" and vis != want_vis:
        return False
    # os_hidden=false (the default) lists visible images only; true lists hidden ones only.
    if bool(o.get("hidden", False)) != (query.get("os_hidden", "false").lower() == "true"):
        return False
    if vis == "shared" and not mine:
        status = (o.get("members") or {}).get(pid, "")
        if query.get("member_status", "accepted") not in ("all", status):
            return False
    if o.get("status") in ("deleted", "pending_delete") and not fake.admin:
        return False
    return True


def _glance_images(fake, query, link):
    pid = fake.project_id
    objs, order = fake.listing("images")
    ids = [i for i in order if _glance_visible(fake, objs[i], query)]
    page, limit, more = page_after_marker(ids, query, GLANCE_DEFAULT_LIMIT)
    doc = {"images": [_glance_image(i, objs[i], pid) for i in page],
           "first": "/v2/images", "schema": "/v2/schemas/images"}
    if more or link == "page_loop":
        doc["next"] = "/v2/images?" + next_query(query, page, limit, link)
    return 200, {}, doc


def _glance_usage(fake):
    """/v2/info/usage counted as Glance counts (glance.db.sqlalchemy.api):

    image_count_total: the owner's images not killed, pending_delete or deleted,
    hidden ones included; image_size_total: size x live locations of those
    with size > 0, in MiB rounded down. The answer has the sample's shape.
    """
    if fake.usage_api == "missing":
        raise HttpError(404, "The resource could not be found.")
    if fake.usage_api == "disabled":
        return 200, {}, {"usage": {}}
    pid = fake.project_id
    mine = [o for o in fake.listing("images")[0].values() if o.get("owner", o.get("project")) == pid]
    gone = ("killed", "pending_delete", "deleted")
    live = [o for o in mine if o.get("status", "active") not in gone]
    size = sum((o.get("size") or 0) * o.get("locations", 1) for o in live if (o.get("size") or 0) > 0)
    uploading = sum(1 for o in mine if o.get("status") in ("saving", "uploading", "importing"))
    limits = fake.limits or {}
    doc = sample("glance-usage-response.json")
    for name, used in (("image_count_total", len(live)), ("image_size_total", size // MIB),
                       ("image_stage_total", 0), ("image_count_uploading", uploading)):
        doc["usage"][name] = {"limit": limits.get(name, -1), "usage": used}
    return 200, {}, doc
