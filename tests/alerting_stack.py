"""The monitoring half of an end-to-end stack, shared by tests/test_e2e.py and
tests/test_rackspace_backup_e2e.py: a webhook recorder, Debian's Alertmanager
with the shipped routing and Debian's Prometheus with the shipped rules
(`for:` cut to 1s), all on loopback ports, plus a server root for host mode.

A test's stack subclasses AlertingStack: it starts its fake clouds and
exporters, then start_alerting(scrape targets by job).
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

from conftest import ROOT, die_with_parent, free_port, http_get, need_binary, stop_process, wait_until

GIB = 2**30


class Webhook:
    """Alertmanager's webhook receiver: records every POSTed notification."""

    def __init__(self):
        self.received = []            # (path, payload)
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with hook.lock:
                    hook.received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def alerts(self):
        """(path, receiver, alert) of every alert of every notification so far."""
        with self.lock:
            received = list(self.received)
        return [(path, payload["receiver"], alert) for path, payload in received for alert in payload["alerts"]]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Process:
    """A Debian binary run on loopback ports, its output in a log file."""

    def __init__(self, name, args, log_dir):
        self.name = name
        self.log_path = os.path.join(log_dir, name + ".log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=log_dir,
                                     preexec_fn=die_with_parent)

    def alive(self):
        if self.proc.poll() is not None:
            raise AssertionError("%s exited with %s: %s" % (self.name, self.proc.returncode, self.log()))
        return True

    def log(self):
        self._log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def stop(self):
        stop_process(self.proc)
        self._log.close()


def ready(url):
    try:
        return http_get(url, 1)[0] == 200
    except OSError:
        return False


def host_root(root):
    """A server's root as host mode reads it: PID 1's mount table and sysfs.

    /dev/vda holds / (the system disk, 40 GiB), /dev/vdb holds /srv (a data
    disk). statvfs of both lands on the temporary directory's filesystem.
    """
    (root / "proc" / "1").mkdir(parents=True)
    (root / "proc" / "1" / "mounts").write_text(
        "/dev/vda / ext4 rw,relatime 0 0\n/dev/vdb /srv ext4 rw,relatime 0 0\n"
        "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n")
    (root / "srv").mkdir()
    for disk, gib in (("vda", 40), ("vdb", 100)):
        (root / "sys" / "class" / "block" / disk).mkdir(parents=True)
        (root / "sys" / "block" / disk).mkdir(parents=True)
        (root / "sys" / "block" / disk / "size").write_text("%d\n" % (gib * GIB // 512))
    return root


def shipped_rules(path):
    """alerts/imaging-rules.yml with every `for:` and group interval cut to 1s, so alerts fire
    within seconds; except the pages for being blind more than an hour, which keep their hour
    (the blind cloud's source-down warning must be firing on its own)."""
    with open(os.path.join(ROOT, "alerts", "imaging-rules.yml"), encoding="utf-8") as f:
        rules = yaml.safe_load(f)
    for group in rules["groups"]:
        if "interval" in group:
            group["interval"] = "1s"
        for rule in group["rules"]:
            blind_page = (rule.get("alert") in ("ImagingExporterDown", "ImagingSourceDown")
                          and rule["labels"]["severity"] == "critical")
            if "for" in rule and not blind_page:
                rule["for"] = "1s"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return rules


def shipped_alertmanager_config(path, webhook_url):
    """alerts/alertmanager.yml with the receivers' webhooks sent to ``webhook_url`` and short waits."""
    with open(os.path.join(ROOT, "alerts", "alertmanager.yml"), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)

    def shorten(route):
        for key in ("group_wait", "group_interval"):
            if key in route:
                route[key] = "1s"
        for sub in route.get("routes", []):
            shorten(sub)
    shorten(cfg["route"])
    for receiver in cfg["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url + urllib.parse.urlsplit(hook["url"]).path
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cfg


class AlertingStack:
    """Parts started in order and stopped in reverse, failures included."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.parts = []               # stopped in reverse order

    def add(self, part):
        self.parts.append(part)
        return part

    def start_alerting(self, targets):
        """Alertmanager and Prometheus (scraping ``targets``, {job: [host:port]}, every second), ready."""
        self.webhook = self.add(Webhook())
        am_cfg = self.tmp / "alertmanager.yml"
        self.am_config = shipped_alertmanager_config(am_cfg, self.webhook.url)
        r = subprocess.run([need_binary("amtool"), "check-config", str(am_cfg)], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        am_port = free_port()
        self.am_url = "http://127.0.0.1:%d" % am_port
        self.am = self.add(Process("alertmanager", [
            need_binary("prometheus-alertmanager"), "--config.file=%s" % am_cfg,
            "--storage.path=%s" % (self.tmp / "am"), "--web.listen-address=127.0.0.1:%d" % am_port,
            "--cluster.listen-address=", "--log.level=warn"], str(self.tmp)))

        self.rules = shipped_rules(self.tmp / "rules.yml")
        prom_cfg = self.tmp / "prometheus.yml"
        prom_cfg.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(self.tmp / "rules.yml")],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:%d" % am_port]}]}]},
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(hosts)}]}
                               for job, hosts in targets.items()]}))
        r = subprocess.run([need_binary("promtool"), "check", "config", str(prom_cfg)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        prom_port = free_port()
        self.prom_url = "http://127.0.0.1:%d" % prom_port
        self.prom = self.add(Process("prometheus", [
            need_binary("prometheus"), "--config.file=%s" % prom_cfg, "--storage.tsdb.path=%s" % (self.tmp / "prom"),
            "--web.listen-address=127.0.0.1:%d" % prom_port, "--log.level=warn"], str(self.tmp)))
        wait_until(lambda: self.am.alive() and ready(self.am_url + "/-/ready"), 30, 0.1, "Alertmanager")
        wait_until(lambda: self.prom.alive() and ready(self.prom_url + "/-/ready"), 30, 0.1, "Prometheus")

    def stop(self):
        errors = []
        for part in reversed(self.parts):
            try:
                part.stop()
            except Exception as e:  # noqa: BLE001 - stop the rest whatever happens
                errors.append(e)
        if errors:
            raise errors[0]

    def notified(self, receiver_path, **labels):
        """The alerts that reached the webhook at ``receiver_path`` with ``labels``."""
        return [a for path, _, a in self.webhook.alerts()
                if path == receiver_path and all(a["labels"].get(k) == v for k, v in labels.items())]

    # -- Prometheus' HTTP API --
    def api(self, path, **params):
        url = self.prom_url + path + "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.load(r)
        assert doc["status"] == "success", doc
        return doc["data"]

    def query(self, expr):
        return self.api("/api/v1/query", query=expr)["result"]

    def query_range(self, expr, seconds=30, step=2):
        end = time.time()
        return self.api("/api/v1/query_range", query=expr, start=end - seconds, end=end, step=step)["result"]
