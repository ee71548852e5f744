"""Rackspace Cloud Backup end to end: fake Identity + Cloud Backup -> exporters -> Prometheus -> Alertmanager.

- The fake account (documented bodies, real clock): db-1 has an enabled nightly
  configuration covering /var/lib/mysql, a success 3 hours ago and a backup
  InProgress for 25 hours; db-2 has an agent but no configuration.
- imaging-exporter in cloud mode reads it through keystoneauth1 + rackspaceauth
  (clouds.yaml with auth_type rackspace_apikey, endpoint from the catalog), and
  two host-mode exporters stand for db-1 and db-2 (profile
  rackspace-general-purpose; a process named mysqld runs on this machine).
- Debian's Prometheus evaluates the shipped rules (`for:` cut to 1s) and sends to
  Debian's Alertmanager with the shipped routing; its webhooks land here.
"""
from __future__ import annotations

import os
import shutil
import time

import pytest

from alerting_stack import AlertingStack, Process, host_root
from conftest import ExporterProcess, wait_until
from fakes.rackspace_backup_api import FakeRackspaceBackup

DB1 = "87c3b6e1-fb1a-41f9-91e5-313ae35a5a06"     # the server ids of tests/fixtures/rackspace_backup/two_databases.yaml
DB2 = "9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
CLOUD = "rackspace-dfw"


class Stack(AlertingStack):
    def start(self):
        # db-1's backup running for 25 h, its last one done 3 h ago; db-2 without a configuration.
        api = self.api = self.add(FakeRackspaceBackup("two_databases", live=True))
        api.start()
        (self.tmp / "clouds.yaml").write_text(api.clouds_yaml())

        # A database server on this machine: host mode counts processes by name.
        (self.tmp / "bin").mkdir()
        os.symlink(shutil.which("sleep"), self.tmp / "bin" / "mysqld")
        self.add(Process("mysqld", [str(self.tmp / "bin" / "mysqld"), "600"], str(self.tmp)))

        cloud_dir = self.tmp / "cloud"
        cloud_dir.mkdir()
        self.cloud = self.add(ExporterProcess(cloud_dir, {"clouds": [
            {"name": CLOUD, "provider": "rackspace_backup", "cloud": "rackspace", "refresh_interval": "2s",
             "request_timeout": "2s"}]}, args=["--no-collector.host"],
            env={"OS_CLIENT_CONFIG_FILE": str(self.tmp / "clouds.yaml")}))
        hosts = []
        for name, server_id in (("db-1", DB1), ("db-2", DB2)):
            d = self.tmp / name
            d.mkdir()
            root = host_root(d / "root")
            hosts.append(self.add(ExporterProcess(d, {"host": {
                "profile": "rackspace-general-purpose", "server_id": server_id, "root_path": str(root)}})))
        self.host_instances = {name: "127.0.0.1:%d" % h.port for name, h in zip(("db-1", "db-2"), hosts)}

        self.start_alerting({"imaging-host": list(self.host_instances.values()),
                             "imaging-cloud": ["127.0.0.1:%d" % self.cloud.port]})
        return self


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("rackspace-e2e"))
    try:
        yield s.start()
    finally:
        s.stop()


def test_a_backup_stuck_past_24h_pages(stack):
    page = wait_until(lambda: stack.notified("/pager", alertname="ImagingJobStuck"), 40, 0.2,
                      "ImagingJobStuck at the pager: " + stack.cloud.log()[-2000:])
    labels = page[0]["labels"]
    assert (labels["kind"], labels["job_id"], labels["server_id"], labels["server_name"], labels["cloud"],
            labels["project"], labels["severity"]) == ("backup", "134330", DB1, "db-1", CLOUD, stack.api.tenant,
                                                       "critical")
    assert "phase" not in labels      # one alert per job, whatever state the API reports
    assert "backup job 134330 of server db-1" in page[0]["annotations"]["description"]


def test_mysql_without_a_configuration_warns_and_the_covered_server_does_not(stack):
    wait_until(lambda: stack.notified("/ticket", alertname="ImagingDatabaseWithoutBackup"), 40, 0.2,
               "ImagingDatabaseWithoutBackup at the ticket receiver")
    wait_until(lambda: stack.notified("/ticket", alertname="ImagingUncoveredDataWithoutBackup"), 20, 0.2,
               "ImagingUncoveredDataWithoutBackup at the ticket receiver")
    time.sleep(3)       # a few more evaluations, for anything about db-1 to show up
    for name in ("ImagingDatabaseWithoutBackup", "ImagingUncoveredDataWithoutBackup"):
        servers = {a["labels"]["server_id"] for _, _, a in stack.webhook.alerts() if a["labels"]["alertname"] == name}
        assert servers == {DB2}, (name, servers)
    db1 = {a["labels"]["alertname"] for _, _, a in stack.webhook.alerts() if a["labels"].get("server_id") == DB1}
    # db-1's only problem is its stuck backup (ImagingJobRunningLong is the same job, as a warning).
    assert db1 <= {"ImagingJobStuck", "ImagingJobRunningLong"}, db1
