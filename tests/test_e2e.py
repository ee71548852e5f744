"""End to end through real parts: exporters -> Prometheus -> Alertmanager -> webhook, and the dashboards.

One stack for the module, every part on a loopback port and stopped in the
fixture's finally, failures included:

- the fake clouds (tests/fakes): four OpenStack projects, driven through
  unpatched openstacksdk and a clouds.yaml ("os-stuck": an image saving for
  25 hours; "os-full": the image count quota used up; "os-blind": a stuck
  job, and an API that fails after the first refresh; "os-quiet": nothing
  wrong), and the Linode account of tests/fixtures/linode/account.yaml moved
  to the real clock (db-1: a backup running for 25 h, an image being taken,
  two failed images and one that succeeded, a disk too large to image; 24 of
  25 images), and a Rackspace Cloud Backup account (quiet-1's agent online,
  a nightly configuration, a success 3 hours ago: nothing to alert on);
- imaging-exporter in cloud mode polling all six every 3 s, and in host mode
  on a server root laid out in a temporary directory (a system disk and a data
  disk, a limit of our own that /srv is over, server_id 102 = Linode's db-1,
  and a process named redis-server running);
- Debian's Prometheus scraping both every second with the shipped rules
  (alerts/imaging-rules.yml, every `for:` cut to 1s), sending to Debian's
  Alertmanager with the shipped routing (alerts/alertmanager.yml, webhooks
  pointed at a recorder in this process, group waits cut to 1s).

The tests then read what reached the webhook, run every query of every
dashboard panel against that Prometheus, and lint the exporters' output with
`promtool check metrics`.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest
import yaml

from alerting_stack import GIB, AlertingStack, Process, host_root
from conftest import ExporterProcess, need_binary, wait_until
from dashboard_queries import check_queries_return_data, check_server_dashboard
from fakes.faults import Fault
from fakes.linode_api import FakeLinodeAPI, format_time
from fakes.openstack_api import FakeOpenStack
from fakes.openstack_scenarios import project_scenario
from fakes.rackspace_backup_api import FakeRackspaceBackup
from openstack_cloud import fake_entry

HOST_SERVER_ID = "102"             # Linode's db-1 in tests/fixtures/linode/account.yaml
LINODE_CLOUD = "linode"
BACKUP_CLOUD = "rackspace-dfw"
RECEIVER_PATHS = {"imaging-pager": "/pager", "imaging-ticket": "/ticket", "imaging-info": "/info"}


# ---- scenarios ----------------------------------------------------------------------------

def stuck_scenario(now):
    """legacy-1's image has been saving for 25 hours; web-1 was imaged two hours ago in 20 minutes."""
    return project_scenario(project_name="stuck", start=now,
                            limits={"image_count_total": 100, "image_size_total": 102400}, objects={
                            "servers": {
                                "srv-legacy": {"name": "legacy-1", "image": "img-base", "created_at": "-90d"},
                                "srv-web": {"name": "web-1", "image": "img-base", "created_at": "-30d"}},
                            "images": {
                                "img-base": {"name": "ubuntu-22.04-base", "status": "active", "size": 10 * GIB,
                                             "created_at": "-30d", "updated_at": "-30d"},
                                "img-legacy-stuck": {"name": "legacy-1-nightly", "status": "saving",
                                                     "server": "srv-legacy", "image_type": "snapshot",
                                                     "created_at": "-25h", "updated_at": "-24h50m"},
                                "img-web-prev": {"name": "web-1-nightly", "status": "active", "size": 3 * GIB,
                                                 "server": "srv-web", "image_type": "snapshot",
                                                 "created_at": "-2h", "updated_at": "-1h40m"}}})


def full_scenario(now):
    """Glance's unified limits allow 3 images and the project holds 3."""
    return project_scenario(project_name="full", start=now,
                            limits={"image_count_total": 3, "image_size_total": 102400}, objects={
                            "servers": {"srv-app": {"name": "app-1", "image": "img-base", "created_at": "-30d"}},
                            "images": {
                                "img-base": {"name": "debian-12-base", "status": "active", "size": 2 * GIB,
                                             "created_at": "-30d", "updated_at": "-30d"},
                                "img-app-1": {"name": "app-1-monday", "status": "active", "size": 4 * GIB,
                                              "server": "srv-app", "image_type": "snapshot",
                                              "created_at": "-50h", "updated_at": "-49h40m"},
                                "img-app-2": {"name": "app-1-tuesday", "status": "active", "size": 4 * GIB,
                                              "server": "srv-app", "image_type": "snapshot",
                                              "created_at": "-26h", "updated_at": "-25h45m"}}})


def quiet_scenario(now):
    """A project with nothing wrong: few images, far from the quota, nothing running or failed."""
    return project_scenario(project_name="quiet", start=now,
                            limits={"image_count_total": 100, "image_size_total": 102400}, objects={
                            "servers": {"srv-quiet": {"name": "quiet-1", "image": "img-base", "created_at": "-30d"}},
                            "images": {
                                "img-base": {"name": "rocky-9-base", "status": "active", "size": 2 * GIB,
                                             "created_at": "-30d", "updated_at": "-30d"},
                                "img-quiet": {"name": "quiet-1-nightly", "status": "active", "size": 3 * GIB,
                                              "server": "srv-quiet", "image_type": "snapshot",
                                              "created_at": "-3h", "updated_at": "-2h45m"}}})


def blind_scenario(now):
    """blind-1's image has been saving for 25 hours, and the cloud's API fails after the first
    refresh: a source-down warning for the cloud must not keep the stuck-job page from anyone."""
    return project_scenario(project_name="blind", start=now,
                            limits={"image_count_total": 100, "image_size_total": 102400}, objects={
                            "servers": {"srv-blind": {"name": "blind-1", "image": "img-base", "created_at": "-60d"}},
                            "images": {
                                "img-base": {"name": "alma-9-base", "status": "active", "size": 2 * GIB,
                                             "created_at": "-60d", "updated_at": "-60d"},
                                "img-blind-stuck": {"name": "blind-1-nightly", "status": "saving",
                                                    "server": "srv-blind", "image_type": "snapshot",
                                                    "created_at": "-25h", "updated_at": "-24h55m"}}})


OPENSTACK = {"os-stuck": stuck_scenario, "os-full": full_scenario, "os-quiet": quiet_scenario,
             "os-blind": blind_scenario}


# ---- the parts --------------------------------------------------------------------------------

class Stack(AlertingStack):
    def start(self):
        now = time.time()

        # Fake clouds.
        self.openstack = {}
        clouds_yaml = {}
        for name, scenario in OPENSTACK.items():
            fake = self.add(FakeOpenStack(scenario(now)))
            fake.start()
            self.openstack[name] = fake
            clouds_yaml[name] = fake_entry(fake)
        # Rackspace Cloud Backup: quiet-1's agent, online, a nightly configuration that succeeded 3 h ago.
        self.backup = self.add(FakeRackspaceBackup("quiet", live=True))
        self.backup.start()
        clouds_yaml.update(yaml.safe_load(self.backup.clouds_yaml(BACKUP_CLOUD))["clouds"])
        (self.tmp / "clouds.yaml").write_text(yaml.safe_dump({"clouds": clouds_yaml}))
        self.linode = self.add(FakeLinodeAPI("account", live=True))
        # db-1 was also imaged successfully 30 hours ago (an image it has since deleted), before
        # its two failures, so it has every kind of job: running, stuck, failed twice in a row
        # and succeeded.
        self.linode.add("events", {
            "id": 9101, "action": "disk_imagize", "created": format_time(now - 30 * 3600), "duration": 900.0,
            "entity": {"id": 102, "label": "db-1", "type": "linode", "url": "/v4/linode/instances/102"},
            "secondary_entity": {"id": "private/20031", "label": "db-1-before-upgrade", "type": "image",
                                 "url": "/v4/images/private/20031"},
            "status": "finished", "percent_complete": 100, "rate": None, "read": False, "seen": True,
            "time_remaining": None, "username": "ops", "message": None})
        self.linode.start()

        # A database server on the host: host mode counts processes by name.
        sleep = shutil.which("sleep")
        (self.tmp / "bin").mkdir()
        os.symlink(sleep, self.tmp / "bin" / "redis-server")
        self.add(Process("redis-server", [str(self.tmp / "bin" / "redis-server"), "600"], str(self.tmp)))

        # The exporters.
        cloud_dir, host_dir = self.tmp / "cloud", self.tmp / "host"
        cloud_dir.mkdir()
        host_dir.mkdir()
        clouds = [{"name": n, "provider": "openstack", "cloud": n, "refresh_interval": "3s",
                   "request_timeout": "2s"} for n in OPENSTACK]
        clouds.append({"name": LINODE_CLOUD, "provider": "linode", "api_url": self.linode.url,
                       "token_env": "IMAGING_TEST_LINODE_TOKEN", "refresh_interval": "3s", "request_timeout": "2s"})
        clouds.append({"name": BACKUP_CLOUD, "provider": "rackspace_backup", "cloud": BACKUP_CLOUD,
                       "refresh_interval": "3s", "request_timeout": "2s"})
        env = {"OS_CLIENT_CONFIG_FILE": str(self.tmp / "clouds.yaml"),
               "IMAGING_TEST_LINODE_TOKEN": self.linode.token}
        self.cloud = self.add(ExporterProcess(cloud_dir, {"clouds": clouds}, args=["--no-collector.host"], env=env))
        root = host_root(self.tmp / "root")
        self.host = self.add(ExporterProcess(host_dir, {"host": {
            "profile": "rackspace-firstgen-linux", "server_id": HOST_SERVER_ID, "root_path": str(root),
            "limits": [{"name": "app_data", "measure": "used_bytes", "value": "1MB", "mountpoints": "^/srv$"}],
        }}))
        self.host_instance = "127.0.0.1:%d" % self.host.port
        self.cloud_instance = "127.0.0.1:%d" % self.cloud.port

        # Alertmanager with the shipped routing (webhooks pointed at us), Prometheus with the shipped rules.
        self.start_alerting({"imaging-host": [self.host_instance], "imaging-cloud": [self.cloud_instance]})
        # Every cloud refreshed once, and both targets scraped.
        wait_until(lambda: len(self.query('imaging_source_up{job="imaging-cloud"} == 1')) == len(OPENSTACK) + 2,
                   40, 0.2, "every cloud's first refresh: " + self.cloud.log()[-2000:])
        # os-blind's API fails from now on: the exporter keeps its last good data (the stuck job).
        self.openstack["os-blind"].add_fault(Fault("error", "/v2/images", 503))
        wait_until(lambda: len(self.query('up{job=~"imaging-.*"} == 1')) == 2, 20, 0.2, "both targets up")
        return self


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    started = time.monotonic()
    s = Stack(tmp_path_factory.mktemp("e2e"))
    try:
        yield s.start()
    finally:
        s.stop()
        print("\ne2e stack up and down in %.1fs" % (time.monotonic() - started))


# ---- alerts through Alertmanager to the receivers ---------------------------------------------

def expected_notifications(stack):
    """(receiver, labels the alert must carry) that the scenarios must produce."""
    cloud = {"job": "imaging-cloud", "instance": stack.cloud_instance}
    host = {"job": "imaging-host", "instance": stack.host_instance}
    return [
        # The stuck job (25 h): pages, one alert per job, without the phase label.
        ("imaging-pager", dict(cloud, alertname="ImagingJobStuck", severity="critical", cloud="os-stuck",
                               project="stuck", server_id="srv-legacy", server_name="legacy-1", kind="image",
                               job_id="img-legacy-stuck")),
        ("imaging-pager", dict(cloud, alertname="ImagingJobStuck", severity="critical", cloud=LINODE_CLOUD,
                               server_id="102", server_name="db-1", kind="backup")),
        # The full quota: pages.
        ("imaging-pager", dict(cloud, alertname="ImagingImageQuotaFull", severity="critical", cloud="os-full",
                               project="full")),
        ("imaging-pager", dict(cloud, alertname="ImagingJobFailedRepeatedly", severity="critical",
                               cloud=LINODE_CLOUD, server_id="102", kind="image")),
        ("imaging-pager", dict(host, alertname="ImagingSizeLimitExceeded", severity="critical", limit="app_data",
                               mountpoint="/srv")),
        # Warnings make tickets.
        ("imaging-ticket", dict(cloud, alertname="ImagingImageQuotaNearlyFull", severity="warning",
                                cloud=LINODE_CLOUD)),
        # A cloud whose API fails: its warning makes a ticket, and its stuck job still pages.
        ("imaging-ticket", dict(cloud, alertname="ImagingSourceDown", severity="warning", cloud="os-blind")),
        ("imaging-pager", dict(cloud, alertname="ImagingJobStuck", severity="critical", cloud="os-blind",
                               server_id="srv-blind", job_id="img-blind-stuck")),
        ("imaging-ticket", dict(cloud, alertname="ImagingBackupTooOld", severity="warning", cloud=LINODE_CLOUD,
                                server_id="102", kind="backup")),
        # Host and cloud joined on server_id: redis runs on db-1 while its image is taken.
        ("imaging-ticket", dict(host, alertname="ImagingDatabaseRunningDuringImage", severity="warning",
                                server_id=HOST_SERVER_ID, engine="redis", cloud=LINODE_CLOUD, server_name="db-1")),
        # Info never pages.
        ("imaging-info", dict(host, alertname="ImagingDataNotInImage", severity="info", mountpoint="/srv",
                              reason="data_filesystem")),
        ("imaging-info", dict(cloud, alertname="ImagingBackupsDisabled", severity="info", cloud=LINODE_CLOUD,
                              server_id="104")),
    ]


def find(received, receiver, labels):
    return [(path, alert) for path, rcv, alert in received
            if rcv == receiver and alert["status"] == "firing"
            and all(alert["labels"].get(k) == v for k, v in labels.items())]


@pytest.fixture(scope="module")
def notified(stack):
    """Every expected notification arrived; then a few more seconds for anything that should not."""
    expected = expected_notifications(stack)

    def missing():
        got = stack.webhook.alerts()
        return [e for e in expected if not find(got, *e)]
    try:
        wait_until(lambda: not missing(), timeout=60, interval=0.25, what="the notifications")
    except AssertionError:
        firing = stack.query('ALERTS{alertstate="firing"}')
        pytest.fail("never notified: %s\nfiring in Prometheus: %s\nreceived: %s" % (
            missing(), [a["metric"] for a in firing],
            [(r, a["labels"]) for _, r, a in stack.webhook.alerts()]))
    time.sleep(4)     # several evaluation, send and group intervals
    return stack.webhook.alerts()


def test_alerts_reach_the_receivers_with_their_labels(stack, notified):
    for receiver, labels in expected_notifications(stack):
        hits = find(notified, receiver, labels)
        assert hits, (receiver, labels)
        for path, alert in hits:
            assert path == RECEIVER_PATHS[receiver]
            ann = alert["annotations"]
            assert ann["summary"] and ann["description"] and ann["runbook_url"].startswith("https://")
            assert "<no value>" not in ann["description"], ann["description"]
    # Each alert went to the receiver of its severity, and nowhere else.
    by_severity = {"critical": "imaging-pager", "warning": "imaging-ticket", "info": "imaging-info"}
    for path, receiver, alert in notified:
        assert receiver == by_severity[alert["labels"]["severity"]], alert["labels"]
    stuck = find(notified, "imaging-pager", {"alertname": "ImagingJobStuck", "cloud": "os-stuck"})[0][1]
    assert "phase" not in stuck["labels"]
    description = stuck["annotations"]["description"]
    assert "legacy-1" in description and "running for 1d 1h" in description, description


def test_inhibitions_hide_what_a_critical_alert_explains(stack, notified):
    """Prometheus fires them; the shipped inhibit rules keep them from the receivers."""
    firing = [a["metric"] for a in stack.query('ALERTS{alertstate="firing"}')]

    def fired(**labels):
        return any(all(m.get(k) == v for k, v in labels.items()) for m in firing)

    hidden = [dict(alertname="ImagingJobRunningLong", cloud="os-stuck", job_id="img-legacy-stuck"),
              dict(alertname="ImagingJobRunningLong", cloud=LINODE_CLOUD, server_id="102", kind="backup"),
              dict(alertname="ImagingImageQuotaNearlyFull", cloud="os-full"),
              dict(alertname="ImagingJobRunningLong", cloud="os-blind"),
              ]
    for labels in hidden:
        assert fired(**labels), labels
        assert not [a for _, _, a in notified if all(a["labels"].get(k) == v for k, v in labels.items())], labels


def test_a_stuck_job_pages_while_a_warning_for_its_cloud_fires(stack, notified):
    """A source-down warning for a cloud never silences that cloud's pages (issue 12)."""
    warning = find(notified, "imaging-ticket", {"alertname": "ImagingSourceDown", "cloud": "os-blind"})
    page = find(notified, "imaging-pager", {"alertname": "ImagingJobStuck", "cloud": "os-blind"})
    assert warning and page
    # Both fire in Prometheus now, and Alertmanager holds the page as active, not inhibited.
    assert stack.query('ALERTS{alertname="ImagingSourceDown", severity="warning", cloud="os-blind", '
                       'alertstate="firing"}')
    am = json.load(urllib.request.urlopen(stack.am_url + "/api/v2/alerts?filter=cloud%3D%22os-blind%22", timeout=5))
    state = {(a["labels"]["alertname"], a["labels"]["severity"]): a["status"] for a in am}
    assert state[("ImagingJobStuck", "critical")]["state"] == "active", state
    assert not state[("ImagingJobStuck", "critical")]["inhibitedBy"]
    assert state[("ImagingSourceDown", "warning")]["state"] == "active", state
    # The warning inhibits the cloud's other warnings.
    assert state[("ImagingJobRunningLong", "warning")]["inhibitedBy"], state


def test_the_quiet_cloud_is_watched_and_sends_nothing(stack, notified):
    assert stack.query('imaging_source_up{cloud="os-quiet"} == 1')
    images = stack.query('imaging_images{cloud="os-quiet"}')
    assert sum(float(s["value"][1]) for s in images) == 2
    assert stack.query('imaging_quota_images{cloud="os-quiet", source="api"}')
    assert not stack.query('ALERTS{cloud="os-quiet"}')
    assert not [a for _, _, a in notified if a["labels"].get("cloud") == "os-quiet"]


def test_every_rule_evaluates_without_error(stack, notified):
    groups = stack.api("/api/v1/rules")["groups"]
    shipped = sum(len(g["rules"]) for g in stack.rules["groups"])
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == shipped
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, bad


# ---- the dashboards against that Prometheus --------------------------------------------------

def test_every_dashboard_query_returns_data(stack, notified):
    """Each query of each panel, variables as Grafana would fill them, returns series."""
    check_queries_return_data(stack, HOST_SERVER_ID)


def test_server_dashboard_joins_the_cloud_on_server_id(stack, notified):
    check_server_dashboard(stack, HOST_SERVER_ID, LINODE_CLOUD, "os-stuck", "srv-legacy")


# ---- the exporters' output -----------------------------------------------------------------

def test_promtool_check_metrics_is_clean(stack):
    promtool = need_binary("promtool")
    for exporter in (stack.host, stack.cloud):
        text = exporter.text()
        assert "imaging_source_up" in text
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
