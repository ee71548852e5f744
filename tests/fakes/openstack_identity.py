"""The fake OpenStack's Keystone: version discovery, v3 password tokens, Rackspace's v2.0 API-key tokens."""
from __future__ import annotations

import json
import time
import uuid

from .openstack_wire import HttpError, iso, sample


def _keystone_version(base):
    return {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{base}/identity/v3/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.identity-v3+json"}]}


def serve(fake, method, rest, body, base):
    if rest == "/" and method == "GET":
        return 300, {}, {"versions": {"values": [_keystone_version(base)]}}
    if rest == "/v3" and method == "GET":
        return 200, {}, {"version": _keystone_version(base)}
    if rest == "/v3/auth/tokens" and method == "POST":
        return _issue_token(fake, body, base)
    if rest == "/v2.0/tokens" and method == "POST" and fake.api_key:
        return _issue_v2_token(fake, body, base)
    raise HttpError(404)


def _issue_v2_token(fake, body, base):
    """Rackspace Identity v2.0: {"auth": {"RAX-KSKEY:apiKeyCredentials": {"username", "apiKey"}}}.

    The answer is Keystone v2.0's access document (Keystone's api-ref
    sample), with the catalog in v2.0's publicURL/internalURL form.
    """
    try:
        fake.v2_auth_bodies.append(json.loads(body))
        creds = json.loads(body)["auth"]["RAX-KSKEY:apiKeyCredentials"]
        user, key = creds["username"], creds["apiKey"]
    except (ValueError, KeyError, TypeError):
        raise HttpError(400, "Invalid json request body") from None
    if user != fake.user or key != fake.api_key:
        raise HttpError(401, "Username or api key is invalid.")
    token = uuid.uuid4().hex
    fake.issue_token(token)
    now = time.time()
    doc = sample("keystone-v2-authenticate-response.json")
    access = doc["access"]
    access["token"].update({"id": token, "issued_at": iso(now).replace("Z", ".000000Z"),
                            "expires": iso(now + 3600).replace("Z", ".000000Z"),
                            "tenant": {"id": fake.project_id, "name": fake.project_id, "enabled": True,
                                       "description": "", "tags": []}})
    access["user"].update({"id": uuid.uuid4().hex, "name": fake.user, "username": fake.user,
                           "RAX-AUTH:defaultRegion": "RegionOne"})
    access["serviceCatalog"] = [
        {"type": stype, "name": name, "endpoints": [
            {"region": "RegionOne", "tenantId": fake.project_id, "publicURL": url, "internalURL": url}]}
        for stype, name, url in (("image", "cloudImages", f"{base}/image"),
                                 ("compute", "cloudServersOpenStack", f"{base}/compute/v2.1"),
                                 ("volumev3", "cloudBlockStorage", f"{base}/volume/v3/{fake.project_id}"),
                                 ("block-storage", "cloudBlockStorage", f"{base}/volume/v3/{fake.project_id}"))
        if stype.replace("volumev3", "block-storage") in fake.services]
    return 200, {}, doc


def _issue_token(fake, body, base):
    try:
        auth = json.loads(body)["auth"]
        pw_user = auth["identity"]["password"]["user"]
        project = auth["scope"]["project"]
    except (ValueError, KeyError, TypeError):
        raise HttpError(400, "Expecting password auth scoped to a project.") from None
    right_project = project.get("id") == fake.project_id or project.get("name") == fake.project_name
    if pw_user.get("name") != fake.user or pw_user.get("password") != fake.password or not right_project:
        raise HttpError(401, "The request you have made requires authentication.")
    token = "gAAAAAB" + uuid.uuid4().hex + uuid.uuid4().hex
    fake.issue_token(token)
    now = time.time()
    domain = {"id": "default", "name": fake.domain}
    pid = fake.project_id
    endpoints = {"identity": f"{base}/identity", "image": f"{base}/image",
                 "compute": f"{base}/compute/v2.1",
                 "block-storage": f"{base}/volume/v3/{pid}", "volumev3": f"{base}/volume/v3/{pid}"}
    if fake.cinder_versions == "v1":     # a Cinder that offers v1 only registers as "volume"
        endpoints = {k: v for k, v in endpoints.items() if k not in ("block-storage", "volumev3")}
        endpoints["volume"] = f"{base}/volume/v1/{pid}"
    catalog = []
    for stype, url in endpoints.items():
        if stype in ("identity",) or stype in fake.services or (
                stype in ("volumev3", "volume") and "block-storage" in fake.services):
            catalog.append({"type": stype, "name": stype, "id": uuid.uuid4().hex, "endpoints": [
                {"id": uuid.uuid4().hex, "interface": iface, "region": "RegionOne",
                 "region_id": "RegionOne", "url": url} for iface in ("public", "internal")]})
    roles = [{"id": uuid.uuid4().hex, "name": "member"}, {"id": uuid.uuid4().hex, "name": "reader"}]
    if fake.admin:
        roles.append({"id": uuid.uuid4().hex, "name": "admin"})
    # Keystone's api-ref sample of a project-scoped password token, with this cloud's values.
    doc = sample("keystone-v3-auth-password-project-scoped-response.json")
    doc["token"].update({
        "methods": ["password"], "audit_ids": [uuid.uuid4().hex[:22]],
        "issued_at": iso(now).replace("Z", ".000000Z"),
        "expires_at": iso(now + 3600).replace("Z", ".000000Z"),
        "user": {"id": uuid.uuid4().hex, "name": fake.user, "domain": domain, "password_expires_at": None},
        "project": {"id": pid, "name": fake.project_name, "domain": domain},
        "is_domain": False, "roles": roles, "catalog": catalog})
    return 201, {"X-Subject-Token": token}, doc
