"""0 pages on a quiet fleet: the newcomer setup fires nothing.

Host mode on this machine with every shipped profile (the limits that do not apply to this
machine turned off, as docs/runbooks.md says: it is not a General Purpose / I/O server anyone
builds from, and its 25+ GB would not fit Linode's 6 GB custom image), Debian's Prometheus
scraping them every second with the shipped rules, every `for:` and group interval cut to 1s so
that anything that could fire does. Nothing may fire but info.
"""
from __future__ import annotations

import json
import subprocess
import os
import time
import urllib.parse
import urllib.request

import yaml

from conftest import ROOT, ExporterProcess, die_with_parent, free_port, http_get, need_binary, stop_process, wait_until
from exporter import profiles

NOT_THIS_MACHINE = {"rackspace-general-purpose": ["system_volume"], "rackspace-io": ["system_volume"],
                    "linode": ["custom_image_size"]}


def test_every_shipped_profile_on_this_machine_fires_nothing(tmp_path):
    exporters = []
    prom = None
    try:
        for name in profiles.profiles():
            d = tmp_path / name
            d.mkdir()
            limits = [{"name": n, "enabled": False} for n in NOT_THIS_MACHINE.get(name, [])]
            exporters.append(ExporterProcess(d, {"host": {"profile": name, "limits": limits}}))
        with open(os.path.join(ROOT, "alerts", "imaging-rules.yml"), encoding="utf-8") as f:
            rules = yaml.safe_load(f)
        for group in rules["groups"]:
            group.pop("interval", None)
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = "1s"
        (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "rules.yml")],
            "scrape_configs": [{"job_name": "imaging-host", "static_configs": [
                {"targets": ["127.0.0.1:%d" % e.port for e in exporters]}]}]}))
        port = free_port()
        url = "http://127.0.0.1:%d" % port
        log = open(tmp_path / "prometheus.log", "wb")
        prom = subprocess.Popen(
            [need_binary("prometheus"), "--config.file=%s" % (tmp_path / "prometheus.yml"),
             "--storage.tsdb.path=%s" % (tmp_path / "data"), "--web.listen-address=127.0.0.1:%d" % port],
            stdout=log, stderr=log, preexec_fn=die_with_parent)

        def query(expr):
            with urllib.request.urlopen(url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}),
                                        timeout=5) as r:
                return json.load(r)["data"]["result"]
        wait_until(lambda: http_get(url + "/-/ready", 1)[0] == 200, 30, 0.2, "Prometheus")
        wait_until(lambda: len(query('up{job="imaging-host"} == 1')) == len(exporters), 30, 0.2, "every target up")
        # Headroom of a limit in force on this machine: the fleet is really watched.
        assert query('imaging_headroom_bytes{limit="volume_size"} > 0')
        time.sleep(8)          # several evaluations with every for: at 1s
        loud = [a["metric"] for a in query('ALERTS{severity!="info"}')]
        assert not loud, loud
        assert not query('imaging_headroom_bytes{limit=~"system_volume|custom_image_size"}')
    finally:
        if prom is not None:
            stop_process(prom)
            log.close()
        for e in exporters:
            e.stop()
