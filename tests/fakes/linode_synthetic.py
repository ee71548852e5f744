"""Synthetic Linode accounts of any size, for benchmarks and scale tests."""
from __future__ import annotations

import time
from typing import Optional

from .linode_api import DEFAULT_TOKEN, FakeLinodeAPI
from .scenario import Scenario


def synthetic_scenario(instances: int, *, images: Optional[int] = None, disks_per_instance: int = 2,
                       backups_every: int = 1, now: Optional[float] = None) -> Scenario:
    """A scenario with `instances` instances.

    Every instance has `disks_per_instance` disks; every `backups_every`-th
    one (0: none) has the Backup Service on, with two automatic backups, the
    newer still running on every 10th. `images` private images (default
    instances // 2), one every 30 minutes back from `now` (default: the real
    time), each with its disk_imagize event; every 50th is still creating.
    """
    now = time.time() if now is None else now
    t = lambda offset: -offset  # noqa: E731 - `offset` seconds before the scenario's start
    images = instances // 2 if images is None else images
    scenario = {"images": [], "instances": [], "disks": {}, "backups": {}, "events": []}
    for n in range(instances):
        iid = 100_000 + n
        backups = bool(backups_every) and n % backups_every == 0
        scenario["instances"].append({
            "id": iid, "label": f"server-{n:05d}", "group": "", "status": "running", "created": t(86400 * 90),
            "updated": t(86400 * 90), "type": "g6-standard-2", "region": "us-east", "image": "linode/debian12",
            "ipv4": [f"192.0.{2 + n // 250 % 250}.{n % 250 + 1}"], "ipv6": "2600:3c03::f03c:94ff:fe65:1/128",
            "hypervisor": "kvm", "specs": {"disk": 81920, "memory": 4096, "vcpus": 2, "transfer": 4000, "gpus": 0},
            "alerts": {"cpu": 180, "io": 10000, "network_in": 10, "network_out": 10, "transfer_quota": 80},
            "backups": {"enabled": backups, "available": backups,
                        "schedule": {"day": "Scheduling", "window": "Scheduling"},
                        "last_successful": t(86400 + 3600) if backups else None},
            "tags": [], "watchdog_enabled": True, "host_uuid": f"3f4c0b6e-0001-4b7e-9c55-{iid:012d}",
            "has_user_data": False, "disk_encryption": "disabled", "lke_cluster_id": None, "capabilities": []})
        scenario["disks"][str(iid)] = [
            {"id": iid * 10 + d, "label": "Debian 12 Disk" if d == 0 else f"Data Disk {d}", "status": "ready",
             "size": 20480 if d == 0 else 512, "filesystem": "ext4", "created": t(86400 * 90),
             "updated": t(86400 * 90), "disk_encryption": "disabled"} for d in range(disks_per_instance)]
        if backups:
            running = n % 10 == 0
            scenario["backups"][str(iid)] = [
                {"id": iid * 10 + k, "label": None, "status": "running" if running and k == 0 else "successful",
                 "type": "auto", "region": "us-east", "created": t(3600 + 86400 * k),
                 "updated": t(1800 + 86400 * k), "finished": None if running and k == 0 else t(1800 + 86400 * k),
                 "configs": ["My Debian 12 Profile"], "disks": [], "available": not (running and k == 0)}
                for k in range(2)]
    for n in range(images):
        server = 100_000 + (n % instances if instances else 0)
        creating = n % 50 == 0
        image_id = f"private/{300_000 + n}"
        label = f"snap-{n:05d}"
        scenario["images"].append({
            "id": image_id, "label": label, "description": None, "created": t(1800 * n), "updated": t(1800 * n),
            "created_by": "ops", "deprecated": False, "is_public": False, "is_shared": False,
            "size": 0 if creating else 2048 + n % 1000, "total_size": 0 if creating else 2048 + n % 1000,
            "type": "manual", "vendor": None, "expiry": None, "eol": None,
            "status": "creating" if creating else "available", "capabilities": [], "tags": [], "regions": []})
        if instances:
            scenario["events"].append({
                "id": 900_000 + n, "action": "disk_imagize", "created": t(1800 * n),
                "duration": None if creating else 600.0,
                "entity": {"id": server, "label": f"server-{server - 100_000:05d}", "type": "linode",
                           "url": f"/v4/linode/instances/{server}"},
                "secondary_entity": {"id": image_id, "label": label, "type": "image", "url": f"/v4/images/{image_id}"},
                "status": "started" if creating else "finished", "percent_complete": 0 if creating else 100,
                "rate": None, "read": False, "seen": True, "time_remaining": None, "username": "ops",
                "message": None})
    objects = {kind: {o["id"]: o for o in scenario[kind]} for kind in ("images", "instances", "events")}
    for kind in ("disks", "backups"):
        objects[kind] = {o["id"]: dict(o, linode_id=int(iid)) for iid, objs in scenario[kind].items() for o in objs}
    return Scenario(start=now, objects=objects, about=f"synthetic: {instances} instances, {images} private images",
                    header={"account": {"euuid": "0B4A3F6C-2D1E-4F5A-9C8B7A6D5E4F3A2B"}})


def synthetic_api(instances: int, *, token: str = DEFAULT_TOKEN, clock=None, **kw) -> FakeLinodeAPI:
    """A FakeLinodeAPI serving synthetic_scenario(instances, **kw), on the real clock unless `clock` is given."""
    clock = clock or time.time
    return FakeLinodeAPI(synthetic_scenario(instances, now=clock(), **kw), token=token, clock=clock)
