"""Rackspace Cloud Backup source: agents, enabled backup configurations, backups running and done.

One refresh, all GET against the Cloud Backup API v1.0 endpoint of the region
(https://{region}.backup.api.rackspacecloud.com/v1.0/{tenant}):

    GET /user/agents                   the account's agents
    GET /agent/{machineAgentId}        per agent: Status, HostServerId, TimeOfLastSuccessfulBackup
                                       ("Status is always Offline" in /user/agents, says the reference)
    GET /backup-configuration          every backup configuration of the account
    GET /activity                      backups in progress and done
    GET /backup/report/{backupId}      per finished backup inside the lookback: start and end,
                                       read once (a report does not change)

plus the Identity v2.0 token POST that keystoneauth1 makes with the
`rackspace_apikey` plugin, whose catalog gives the endpoint.

Times: the API writes .NET JSON dates, "/Date(1357817400000)/" (milliseconds
since the epoch, an optional zone offset that does not change the instant);
-62135578800000 is .NET's DateTime.MinValue, "never".
"""
from __future__ import annotations

import re
import time
from typing import Callable, Dict, List, Optional, Tuple

from keystoneauth1 import exceptions as ksa_exc

from ... import __version__
from ...config import CloudConfig
from ...models import (BackupAgent, BackupConfiguration, BackupFailures, CloudSnapshot, FinishedJob,
                       RunningJob, Server)
from ...profiles import Profile
from .. import api, keystone
from ..http_deadline import DeadlineAdapter
from . import CATALOG_TYPE, NAME

# CurrentState of a backup, from "Checking backup status" and "List backup details".
RUNNING = frozenset({"creating", "queued", "preparing", "inprogress", "startrequested", "startscheduled",
                     "stoprequested"})
SUCCEEDED = frozenset({"completed", "completedwitherrors"})   # the report's Reason is "Success" for both
FAILED = {"failed": "failed", "skipped": "skipped", "missed": "missed"}
# "Stopped": an operator stopped it; neither a success nor a failure to alert on.
INTERVALS = {"daily": 86400.0, "weekly": 7 * 86400.0}
MIN_DATE_MS = -62135578800000 + 86400 * 1000    # anything before 0001-01-02 means "never"
_DOTNET_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


class RackspaceBackupSource:
    provider = NAME

    def __init__(self, cfg: CloudConfig, profile: Profile, clock: Callable[[], float] = time.time):
        self.cfg = cfg
        self.profile = profile
        self._clock = clock
        self._classify = keystone.classifier(cfg.request_timeout, cfg.options["cloud"])
        self._session = None
        self._endpoint = ""
        self._reports: Dict[str, Tuple[float, float]] = {}   # backup id -> (start, end), reports read
        self._heartbeats: Dict[str, float] = {}              # agent id -> last refresh that found it online

    # ---- the contract ----

    def refresh(self) -> CloudSnapshot:
        now = self._clock()
        session = api.call("loading the cloud configuration", self._connect, self._classify)
        access = api.call("authenticating", lambda: session.auth.get_access(session), self._classify)
        base = api.call("finding the Cloud Backup endpoint", lambda: self._base_url(session), self._classify)

        listed = self._get("listing agents", f"{base}/user/agents", list)
        agents = [self._get(f"reading agent {_id(a, 'MachineAgentId')}",
                            f"{base}/agent/{_id(a, 'MachineAgentId')}", dict) for a in listed]
        configs = self._get("listing backup configurations", f"{base}/backup-configuration", list)
        activity = self._get("listing activity", f"{base}/activity", list)

        since = now - self.cfg.lookback
        with api.step("reading the answers", self._classify), api.reading():
            snap = self._snapshot(base, now, since, access, agents, configs, activity)
        self._heartbeats = {a.agent_id: a.last_heartbeat for a in snap.backup_agents if a.last_heartbeat}
        return snap

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.session.close()

    # ---- reading ----

    def _connect(self):
        if self._session is None:
            from openstack import config as os_config
            region = os_config.OpenStackConfig().get_one(cloud=self.cfg.options["cloud"] or None)
            session = region.get_session()
            session.timeout = float(self.cfg.request_timeout)
            # request_timeout bounds each whole response, as for the other clouds: an API
            # that drips a byte a second is a timeout, not a refresh that never ends.
            for scheme in ("https://", "http://"):
                session.session.mount(scheme, DeadlineAdapter(deadline=self.cfg.request_timeout))
            session.app_name, session.app_version = "imaging-exporter", __version__
            self._session, self._region = session, self.cfg.options["region"] or region.region_name or None
        return self._session

    def _base_url(self, session) -> str:
        if self.cfg.options["api_url"]:
            return self.cfg.options["api_url"]
        url = session.get_endpoint(service_type=CATALOG_TYPE, interface="public", region_name=self._region)
        if not url:
            raise ksa_exc.EndpointNotFound(CATALOG_TYPE)
        return url.rstrip("/")

    def _get(self, what: str, url: str, shape: type):
        def run():
            resp = self._session.get(url, connect_retries=0, status_code_retries=0,
                                     headers={"Accept": "application/json"})
            with api.reading():
                body = resp.json()
            if not isinstance(body, shape):
                raise api.Malformed(f"the answer is not a JSON {shape.__name__}")
            return body
        return api.call(what, run, self._classify)

    def _report(self, base: str, backup_id: str) -> Optional[Tuple[float, float]]:
        """(start, end) from the backup's report, read once; None when the API has no report."""
        if backup_id not in self._reports:
            def read():
                try:
                    resp = self._session.get(f"{base}/backup/report/{backup_id}", connect_retries=0,
                                             status_code_retries=0, headers={"Accept": "application/json"})
                except ksa_exc.NotFound:
                    return None
                with api.reading():
                    return resp.json()
            body = api.call(f"reading the report of backup {backup_id}", read, self._classify)
            if body is None:
                return None
            if not isinstance(body, dict):
                raise api.Malformed("a backup report is not a JSON object")
            start, end = _date(body["StartTime"]), _date(body["CompletedTime"])     # null: not known
            if start is None or end is None:
                return None
            self._reports[backup_id] = (start, end)
        return self._reports[backup_id]

    # ---- from answers to a snapshot ----

    def _snapshot(self, base, now, since, access, agents, configs, activity) -> CloudSnapshot:
        by_agent: Dict[str, BackupAgent] = {}
        details: Dict[str, dict] = {}
        disabled = set()
        for d in agents:
            agent_id = _id(d, "MachineAgentId")
            details[agent_id] = d
            online = str(d.get("Status") or "").lower() == "online"
            by_agent[agent_id] = BackupAgent(
                agent_id=agent_id, server_id=str(d.get("HostServerId") or ""),
                server_name=str(d.get("MachineName") or ""), online=online,
                last_heartbeat=now if online else self._heartbeats.get(agent_id))
            if d.get("IsDisabled") is True:
                disabled.add(agent_id)
        enabled = [_configuration(c, by_agent) for c in configs
                   if c.get("IsActive") is True and c.get("IsDeleted") is not True]
        enabled = [c for c in enabled if c.agent_id in by_agent and c.agent_id not in disabled]

        running: List[RunningJob] = []
        finished: List[FinishedJob] = []
        failures: Dict[Tuple[str, str], int] = {}
        seen = set()
        for a in activity:
            if str(a.get("Type") or "").lower() != "backup":
                continue
            state = str(a.get("CurrentState") or "").replace(" ", "").lower()
            job_id = _id(a, "BackupId") if a.get("BackupId") else _id(a, "ID")
            agent = by_agent.get(_id(a, "SourceMachineAgentId"))
            server_id = agent.server_id if agent else ""
            at = _date(a.get("TimeOfActivity"))
            if at is None or job_id in seen:
                continue
            seen.add(job_id)
            if state in RUNNING:
                running.append(RunningJob(job_id=job_id, kind="backup", server_id=server_id,
                                          server_name=str(a.get("SourceMachineName") or ""),
                                          phase=str(a.get("CurrentState")), started=at))
            elif (state in SUCCEEDED or state in FAILED) and at >= since - self.profile.job_stuck_after:
                # TimeOfActivity is the last change of state; a backup that ran longer than
                # the stuck threshold is not worth a report request.
                span = self._report(base, job_id) if state in SUCCEEDED or state == "failed" else None
                started, ended = span or (at, at)
                if ended < since:
                    continue
                finished.append(FinishedJob(job_id=job_id, kind="backup", server_id=server_id, started=started,
                                            finished=ended, succeeded=state in SUCCEEDED))
                if state in FAILED:
                    key = (server_id, FAILED[state])
                    failures[key] = failures.get(key, 0) + 1
        live = {j.job_id for j in finished}
        self._reports = {k: v for k, v in self._reports.items() if k in live}

        servers = {}
        for agent_id, a in by_agent.items():
            if not a.server_id:
                continue
            servers[a.server_id] = Server(
                server_id=a.server_id, name=a.server_name, boot_from_volume=None,
                backups_enabled=any(c.agent_id == agent_id for c in enabled),
                last_backup_success=_date(details[agent_id].get("TimeOfLastSuccessfulBackup")))
        return CloudSnapshot(
            cloud=self.cfg.name, project=access.project_name or access.project_id or "", taken_at=now,
            running_jobs=tuple(sorted(running, key=lambda j: (j.started, j.job_id))),
            finished_jobs=tuple(sorted(finished, key=lambda j: (j.finished, j.job_id))),
            servers=tuple(servers.values()),
            backup_agents=tuple(by_agent.values()),
            backup_configurations=tuple(enabled),
            backup_failures=tuple(BackupFailures(server_id=s, reason=r, count=n)
                                  for (s, r), n in sorted(failures.items())))


def _configuration(c: dict, agents: Dict[str, BackupAgent]) -> BackupConfiguration:
    agent_id = _id(c, "MachineAgentId")
    agent = agents.get(agent_id)
    frequency = str(c.get("Frequency") or "")
    if frequency.lower() == "hourly":
        interval: Optional[float] = float(c.get("HourInterval") or 1) * 3600
    else:
        interval = INTERVALS.get(frequency.lower())
    paths = tuple((str(i["FilePath"]), str(i.get("FileItemType") or "")) for i in c.get("Inclusions") or ())
    return BackupConfiguration(
        configuration_id=_id(c, "BackupConfigurationId"), name=str(c.get("BackupConfigurationName") or ""),
        agent_id=agent_id, server_id=agent.server_id if agent else "", frequency=frequency, interval=interval,
        paths=paths)


def _id(d: dict, key: str) -> str:
    """An id the API writes as a number; a missing one is a malformed answer (KeyError)."""
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, (int, str)) or str(value) == "":
        raise ValueError(f"{key} is not an id")
    return str(value)


def _date(value) -> Optional[float]:
    """Unix seconds of a .NET JSON date ("/Date(1357817400000)/"); None for null or "never"."""
    if value is None:
        return None
    m = _DOTNET_DATE.match(str(value).replace("\\/", "/"))
    if not m:
        raise ValueError(f"{str(value)[:40]!r} is not a /Date(ms)/ time")
    ms = int(m.group(1))
    return None if ms < MIN_DATE_MS else ms / 1000.0
