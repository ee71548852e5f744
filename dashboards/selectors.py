"""PromQL selectors shared by both dashboards: one meaning for each variable everywhere.

Cloud-mode series carry `cloud`, `project` and (per server) `server_id`, so the
variables filter them with label matchers. Host-mode series carry only the host
target's `job` and `instance`; they are filtered through `hosts_in_scope()`: the
host exporters whose `imaging_host_info` server_id is a server that a cloud in
scope knows, plus, while no cloud or project is picked, hosts that no cloud
knows (the host source's `cloud` label is empty, so `cloud=~"$cloud"` matches
it only when the variable is All, `.*`).
"""
from __future__ import annotations

import re

JOB = 'job=~"$job"'
CLOUD = 'cloud=~"$cloud"'
PROJECT = 'project=~"$project"'
SERVER = 'server_id=~"$server"'
# One series per server a cloud knows, on every provider: the cloud side's server inventory.
INVENTORY = "imaging_server_boot_from_volume"


def sel(*matchers: str) -> str:
    parts = [m for m in matchers if m]
    return "{" + ", ".join(parts) + "}" if parts else ""


def account(*extra: str) -> str:
    """Account-level cloud series (quotas, images, jobs running): job, cloud, project."""
    return sel(JOB, CLOUD, PROJECT, *extra)


def cloud_server(*extra: str) -> str:
    """Per-server cloud series (jobs, failures, backups, disks): also the server."""
    return sel(JOB, CLOUD, PROJECT, SERVER, *extra)


def host(*extra: str) -> str:
    """Matchers of host-mode series themselves; combine with hosts_in_scope()."""
    return sel(JOB, *extra)


def hosts_in_scope() -> str:
    """(job, instance, server_id, hostname) of every host exporter the variables select, value 1."""
    info = "imaging_host_info" + sel(JOB, SERVER)
    return """group by (job, instance, server_id, hostname) (
  (
    %(info)s
    and on (server_id)
    %(inv)s%(inv_sel)s
  )
  or
  (
    (%(info)s unless on (server_id) %(inv)s%(job)s)
    and on (job, instance)
    imaging_source_up%(host_src)s
  )
)""" % dict(info=info, inv=INVENTORY, inv_sel=sel(JOB, CLOUD, PROJECT), job=sel(JOB),
            host_src=sel(JOB, 'source="host"', CLOUD, PROJECT))


def in_scope(expr: str) -> str:
    """Host-mode ``expr`` limited to the hosts in scope, labels unchanged."""
    return "(\n%s\n)\nand on (job, instance)\n%s" % (expr, hosts_in_scope())


def with_server(expr: str) -> str:
    """Host-mode ``expr`` limited to the hosts in scope, with their server_id and hostname."""
    return "(\n%s\n)\n* on (job, instance) group_left (server_id, hostname)\n%s" % (expr, hosts_in_scope())


def at_end_top(func: str, k: int, expr: str) -> str:
    """topk/bottomk of ``expr`` as ranked at the end of the range: exactly k series over time.

    topk(k, x) ranks at every step, so a range query draws every series that
    was ever in the top k; ranking `x @ end()` and keeping x's own values with
    `and` draws the k series that are in the top k now.
    """
    return "(\n%s\n)\nand\n%s(%d, %s)" % (expr, func, k, at_end(expr))


_SELECTOR = re.compile(r"\b[a-zA-Z_:][\w:]*\{[^}]*\}(?:\[[^\]]+\])?")


def at_end(expr: str) -> str:
    """``expr`` evaluated at the end of the range: `@ end()` after each selector (PromQL
    takes the modifier on selectors and subqueries only). Every selector here has matchers."""
    return _SELECTOR.sub(lambda m: m.group(0) + " @ end()", expr)


# Server variable: every server id a host exporter or a cloud in scope reports (host exporters
# have no cloud label, so they are listed only while cloud and project are All).
SERVER_VARIABLE = ('label_values({__name__=~"imaging_host_info|%s", %s, %s, %s, server_id!=""}, server_id)'
                   % (INVENTORY, JOB, CLOUD, PROJECT))
