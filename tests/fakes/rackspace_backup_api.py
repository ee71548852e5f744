"""A fake Rackspace Identity v2.0 and Cloud Backup API v1.0 on 127.0.0.1 (standard library only).

Every body is a documented example from tests/fixtures/rackspace_backup/
(see PROVENANCE.md) with the fields a test cares about replaced, so the wire
format is the reference's: .NET dates written "\\/Date(ms)\\/", numeric ids,
PascalCase keys.

The account comes from a scenario (tests/fakes/scenario.py; files in
tests/fixtures/rackspace_backup/*.yaml), or from add_agent, add_configuration
and add_backup. Its kinds, by id: agents {server_id, name, online, disabled,
last_success}, configurations {agent, name, frequency, paths, active,
hour_interval}, backups {agent, state, time_of_activity, started, completed,
configuration}. This fake has no clock: it serves a scenario's start;
set_state() changes a backup later.

- POST /v2.0/tokens takes {"auth": {"RAX-KSKEY:apiKeyCredentials": {...}}}
  (what rackspaceauth's rackspace_apikey plugin sends) and answers the
  documented token with a service catalog whose rax:backup entry points back
  here: one endpoint per region, /<region>/v1.0/<tenant>, and one without a
  region, /v1.0/<tenant>.
- The Cloud Backup routes need the token in X-Auth-Token. GET /user/agents
  answers "Status": "Offline" and no HostServerId, as the reference says it
  does; GET /agent/{id} has the real status.

Faults are switched at run time with set_fault(mode, path=None, **params)
or add_fault(Fault(...)), in the vocabulary of tests/fakes/faults.py (the
modes of SERVES). `path` is matched against the path after /v1.0/<tenant>
("/agent"), or the full path for Identity ("/v2.0").
Every request is recorded in .requests.
"""
from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from .faults import ApiError, Fault, LoopbackAPI, Request
from .scenario import Scenario

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rackspace_backup"
REGIONS = ("DFW", "ORD", "IAD", "LON", "HKG", "SYD")
USERNAME, API_KEY, TENANT = "jsmith", "fake-rackspace-api-key-9d2c41", "110011"

# Scenario fields that hold times (Unix seconds for add_agent and add_backup).
TIME_FIELDS = ("last_success", "time_of_activity", "started", "completed")

SERVES = ("error", "rate_limited", "auth_rejected", "slow", "hang", "malformed_json", "missing_data", "refused")


def fixture(name: str):
    with open(FIXTURES / f"{name}.json", encoding="utf-8") as f:
        return json.load(f)


def load_scenario(name: str) -> Scenario:
    """tests/fixtures/rackspace_backup/<name>.yaml"""
    return Scenario.load(FIXTURES / f"{name}.yaml")


def dotnet_date(ts: Optional[float]) -> Optional[str]:
    return None if ts is None else "/Date(%d)/" % round(ts * 1000)


def _fault_body(status: int, message: str) -> dict:
    name = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound", 405: "badMethod",
            429: "overLimit", 503: "serviceUnavailable"}.get(status, "instanceFault")
    return {name: {"code": status, "message": message}}


class FakeRackspaceBackup(LoopbackAPI):
    """The account: agents, backup configurations, activity and reports, as plain documented dicts."""
    SERVES = SERVES
    NAME = "fake-rackspace-backup"

    def __init__(self, scenario: Union[None, str, Scenario] = None, username: str = USERNAME,
                 api_key: str = API_KEY, tenant: str = TENANT, live: bool = False):
        super().__init__()
        self.username, self.api_key, self.tenant = username, api_key, tenant
        self.agents: Dict[str, dict] = {}           # MachineAgentId -> "List agent details" body
        self.configurations: List[dict] = []        # "List all backup configurations for a user" items
        self.activity: List[dict] = []              # "List all activity for a user" items
        self.reports: Dict[str, dict] = {}          # BackupId -> "Get a backup report" body
        self.tokens: List[str] = []
        self._lock = threading.Lock()
        self.scenario: Optional[Scenario] = None
        if scenario is not None:
            self.load(load_scenario(scenario) if isinstance(scenario, str) else scenario, live=live)

    # ---- building the account from the documented examples ----------------------------

    def load(self, scenario: Scenario, live: bool = False) -> None:
        """Add a scenario's agents, configurations and backups as they are at its start
        (live: the scenario moved to start now, for an exporter on the real clock)."""
        if scenario.steps:
            raise ValueError("the Cloud Backup fake has no clock: a scenario's steps are not served")
        if live:
            scenario = scenario.rebased(time.time())
        self.scenario = scenario
        state = scenario.state(0, TIME_FIELDS)
        for agent_id, a in state.get("agents", {}).items():
            self.add_agent(int(agent_id), a.get("server_id"), a["name"], online=a.get("online", True),
                           last_success=a.get("last_success"), disabled=a.get("disabled", False))
        for config_id, c in state.get("configurations", {}).items():
            self.add_configuration(int(config_id), c["agent"], c["name"], c.get("frequency", "Daily"),
                                   tuple(c.get("paths", ("/var/lib/mysql/",))), active=c.get("active", True),
                                   hour_interval=c.get("hour_interval"))
        for backup_id, b in state.get("backups", {}).items():
            self.add_backup(int(backup_id), b["agent"], b["state"], b["time_of_activity"], b.get("started"),
                            b.get("completed"), b.get("configuration", 0))

    def add_agent(self, agent_id: int, server_id: Optional[str], name: str, online: bool = True,
                  last_success: Optional[float] = None, disabled: bool = False) -> dict:
        body = fixture("agent_details")
        body.update(MachineAgentId=agent_id, MachineName=name, HostServerId=server_id,
                    Status="Online" if online else "Offline", IsDisabled=disabled,
                    TimeOfLastSuccessfulBackup=dotnet_date(last_success))
        with self._lock:
            self.agents[str(agent_id)] = body
        return body

    def add_configuration(self, config_id: int, agent_id: int, name: str, frequency: str = "Daily",
                          paths: Tuple[str, ...] = ("/var/lib/mysql/",), active: bool = True,
                          hour_interval: Optional[int] = None) -> dict:
        # The documented "Weekly Website Backup" item, rescheduled.
        body = fixture("backup_configurations_agent")[1]
        agent = self.agents.get(str(agent_id), {})
        body.update(BackupConfigurationId=config_id, MachineAgentId=agent_id,
                    MachineName=agent.get("MachineName", ""), BackupConfigurationName=name, IsActive=active,
                    Frequency=frequency, HourInterval=hour_interval,
                    DayOfWeekId=body["DayOfWeekId"] if frequency == "Weekly" else None,
                    Inclusions=[{"FilePath": p, "ParentId": config_id, "FileItemType": "Folder",
                                 "FileId": config_id * 10 + i} for i, p in enumerate(paths)])
        with self._lock:
            self.configurations.append(body)
        return body

    def add_backup(self, backup_id: int, agent_id: int, state: str, at: float, started: Optional[float] = None,
                   completed: Optional[float] = None, config_id: int = 0) -> dict:
        """One backup in the activity list; with `started` and `completed`, its report too."""
        body = fixture("activity_user")[0]
        agent = self.agents.get(str(agent_id), {})
        body.update(ID=backup_id + 1000, BackupId=backup_id, ParentId=config_id, CurrentState=state,
                    SourceMachineAgentId=agent_id, SourceMachineName=agent.get("MachineName", ""),
                    TimeOfActivity=dotnet_date(at))
        with self._lock:
            self.activity.append(body)
            if started is not None and completed is not None:
                report = fixture("backup_report")
                report.update(BackupId=backup_id, BackupConfigurationId=config_id, MachineAgentId=agent_id,
                              ComputerName=agent.get("MachineName", ""), State=state,
                              StartTime=dotnet_date(started), CompletedTime=dotnet_date(completed),
                              Duration=time.strftime("%H:%M:%S", time.gmtime(completed - started)),
                              NumErrors=0 if state == "Completed" else report["NumErrors"],
                              ErrorList=[] if state == "Completed" else report["ErrorList"])
                self.reports[str(backup_id)] = report
        return body

    def set_state(self, backup_id: int, state: str, at: float) -> None:
        with self._lock:
            for a in self.activity:
                if a["BackupId"] == backup_id:
                    a.update(CurrentState=state, TimeOfActivity=dotnet_date(at))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def identity_url(self) -> str:
        return f"{self.url}/v2.0/"

    def endpoint(self, region: Optional[str] = "DFW") -> str:
        return f"{self.url}/{region.lower()}/v1.0/{self.tenant}" if region else f"{self.url}/v1.0/{self.tenant}"

    def clouds_yaml(self, name: str = "rackspace", region: Optional[str] = "DFW", api_key: Optional[str] = None) -> str:
        """A clouds.yaml entry as a Rackspace user writes it, pointed at this fake."""
        lines = ["clouds:", f"  {name}:", "    auth_type: rackspace_apikey", "    auth:",
                 f"      username: {self.username}", f"      api_key: {api_key or self.api_key}",
                 f"      auth_url: {self.identity_url}"]
        if region:
            lines.append(f"    region_name: {region}")
        return "\n".join(lines) + "\n"

    # ---- requests ----------------------------------------------------------------------

    def fault_path(self, path: str) -> str:
        return _route_path(path, self.tenant) or path

    def encode(self, answer) -> bytes:
        # The API escapes the slashes of its dates: "\/Date(1357817400000)\/"
        return re.sub(r'"/Date\((-?\d+)\)/"', r'"\\/Date(\1)\\/"', json.dumps(answer)).encode()

    def respond(self, request: Request, raw_body: bytes, fault: Optional[Fault]):
        return self._respond(request, request.path, _route_path(request.path, self.tenant), raw_body, fault), {}

    def _respond(self, request, path, route, raw_body, fault: Optional[Fault]):
        mode = fault.mode if fault else None
        if mode == "error":
            raise ApiError(fault.status, _fault_body(fault.status, fault.message or "The server has either erred or "
                                                     "is incapable of performing the requested operation."),
                           dict(fault.headers))
        if mode == "rate_limited":
            raise ApiError(429, _fault_body(429, "Too many requests"), {"Retry-After": str(fault.retry_after)})
        if mode == "malformed_json":
            return b'[{"MachineAgentId": 213564, "MachineName": '
        if mode == "missing_data":
            return {"message": "nothing here"}
        if path == "/v2.0/tokens":
            if request.method != "POST":
                raise ApiError(405, _fault_body(405, "Method not allowed"))
            return self._token(raw_body, mode)
        if route is None:
            raise ApiError(404, _fault_body(404, "Resource not found"))
        if request.method != "GET":
            raise ApiError(405, _fault_body(405, "Method not allowed"))
        if request.headers.get("X-Auth-Token") not in self.tokens:
            raise ApiError(401, _fault_body(401, "No valid token provided. Please use the 'X-Auth-Token' header"
                                                 " with a valid token."))
        return self._backup_route(route)

    def _token(self, raw_body, mode):
        try:
            creds = json.loads(raw_body)["auth"]["RAX-KSKEY:apiKeyCredentials"]
        except (ValueError, KeyError, TypeError):
            raise ApiError(400, _fault_body(400, "Invalid json request body")) from None
        if mode == "auth_rejected" or creds.get("username") != self.username or creds.get("apiKey") != self.api_key:
            raise ApiError(401, _fault_body(401, "Username or api key is invalid."))
        body = fixture("identity_tokens")
        token = uuid.uuid4().hex
        with self._lock:
            self.tokens.append(token)
        access = body["access"]
        access["token"].update(id=token, expires=time.strftime("%Y-%m-%dT%H:%M:%S.000Z",
                                                               time.gmtime(time.time() + 86400)),
                               tenant={"id": self.tenant, "name": self.tenant})
        for service in access["serviceCatalog"]:
            for ep in service["endpoints"]:
                ep["tenantId"] = self.tenant
                if service["type"] == "rax:backup":
                    ep["publicURL"] = self.endpoint(ep.get("region"))
        access["user"]["name"] = self.username
        return body

    def _backup_route(self, route):
        # Copies taken under the lock (a test may change the account meanwhile); one
        # agent's or report's route copies that one only, so a large account stays cheap.
        with self._lock:
            agents = dict(self.agents)
            configurations = list(self.configurations) if "configuration" in route else []
            activity = list(self.activity) if "activity" in route else []
            reports = dict(self.reports)
        agents = {k: copy.deepcopy(v) for k, v in agents.items()
                  if route == "/user/agents" or route == f"/agent/{k}"}
        configurations, activity = copy.deepcopy(configurations), copy.deepcopy(activity)
        reports = {k: copy.deepcopy(v) for k, v in reports.items() if route == f"/backup/report/{k}"}
        if route == "/user/agents":
            # The documented list item: no HostServerId, and "Status is always Offline in this call".
            template = fixture("user_agents")[0]
            return [dict(template, MachineAgentId=a["MachineAgentId"], MachineName=a["MachineName"],
                         IsDisabled=a["IsDisabled"], Status="Offline", TimeOfLastSuccessfulBackup=None)
                    for a in agents.values()]
        m = re.fullmatch(r"/agent/(\d+)", route)
        if m:
            if m.group(1) not in agents:
                raise ApiError(404, _fault_body(404, "Agent not found"))
            return agents[m.group(1)]
        if route == "/backup-configuration":
            return configurations
        m = re.fullmatch(r"/backup-configuration/system/(\d+)", route)
        if m:
            return [c for c in configurations if str(c["MachineAgentId"]) == m.group(1)]
        if route == "/activity":
            return activity
        m = re.fullmatch(r"/system/activity/(\d+)", route)
        if m:
            return [a for a in activity if str(a["SourceMachineAgentId"]) == m.group(1)]
        m = re.fullmatch(r"/backup/report/(\d+)", route)
        if m:
            if m.group(1) not in reports:
                raise ApiError(404, _fault_body(404, "Backup report not found"))
            return reports[m.group(1)]
        raise ApiError(404, _fault_body(404, "Resource not found"))


def _route_path(path: str, tenant: str) -> Optional[str]:
    """The path after [/<region>]/v1.0/<tenant>, or None for any other path."""
    m = re.fullmatch(r"(?:/([a-z]{3}))?/v1\.0/([^/]+)(/.*)", path)
    if not m or m.group(2) != tenant or (m.group(1) and m.group(1).upper() not in REGIONS):
        return None
    return m.group(3)
