"""OpenStack projects in the shared scenario format: the fixture files, scenarios built in a test, synthetic ones.

A project scenario's header holds `project` (id, name, domain) and `limits`
(Glance unified limits; None: Glance without them); its kinds are servers,
images and volume_snapshots (tests/fixtures/openstack/project.yaml lists their
fields).
"""
from __future__ import annotations

import time
import uuid
from typing import Dict, Optional

from .scenario import FIXTURES, Scenario

PROJECT_ID = "6a3c0e0b8f6b4c53a1d7c2f4e5b6a7c8"
KINDS = ("servers", "images", "volume_snapshots")
# Scenario fields that hold times; a new object gets created_at, a patched one updated_at.
TIME_FIELDS = ("start", "end")               # of a server's instance actions
STAMPS = ("created_at", "updated_at")


def load_scenario(name: str) -> Scenario:
    """tests/fixtures/openstack/<name>.yaml"""
    return Scenario.load(FIXTURES / "openstack" / f"{name}.yaml")


def project_scenario(objects: Optional[dict] = None, steps=(), *, start: Optional[float] = None,
                     limits: Optional[Dict[str, int]] = None, project_id: str = PROJECT_ID,
                     project_name: str = "demo", domain: str = "Default") -> Scenario:
    """A scenario built in a test: one project, Glance unified limits (None: without them)."""
    kw = {} if start is None else {"start": start}
    return Scenario(objects=objects or {}, steps=tuple(steps), **kw,
                    header={"project": {"id": project_id, "name": project_name, "domain": domain},
                            "limits": limits})


def synthetic_scenario(images: int, servers: int, *, saving_every: int = 100,
                       start: Optional[float] = None) -> Scenario:
    """N images and M servers for benchmarks, one image every 10 minutes back from start.

    Every ``saving_every``-th image is saving (a running job); the others
    are active snapshots. ``start`` defaults to now, so that a source on
    the real clock sees the recent ones inside its lookback.
    """
    srv = {}
    for i in range(servers):
        sid = str(uuid.UUID(int=(1 << 64) + i))
        srv[sid] = {"name": f"server-{i:05d}", "image": "0" * 32, "volumes": [],
                    "status": "ACTIVE", "task_state": None, "created_at": -86400 * 30, "updated_at": -86400}
    ids = list(srv)
    imgs = {}
    for i in range(images):
        iid = str(uuid.UUID(int=(2 << 64) + i))
        saving = saving_every and i % saving_every == 0
        created = -600 * i
        imgs[iid] = {"name": f"snap-{i:05d}", "status": "saving" if saving else "active",
                     "size": None if saving else 1_000_000_000 + i,
                     "server": ids[i % servers] if servers else "", "image_type": "snapshot",
                     "owner": PROJECT_ID, "visibility": "private",
                     "created_at": created, "updated_at": created + (0 if saving else 900)}
    return project_scenario({"servers": srv, "images": imgs}, start=time.time() if start is None else start,
                            limits={"image_count_total": images * 2, "image_size_total": images * 4096})
