"""Docs that are generated or promised: the metric reference and the README's commands."""
import os
import re

from exporter import metricsdoc
from exporter.metricsdoc import all_specs
from conftest import ROOT, parse_metrics, run_cli


def test_metric_reference_is_current():
    assert metricsdoc.main(["--check"]) == 0, "run: python -m exporter.metricsdoc"


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    readme = open(os.path.join(ROOT, "README.md")).read()
    first_block = re.search(r"```sh\n(.*?)```", readme, re.S).group(1).strip().splitlines()
    assert len(first_block) == 2
    assert readme.index("```sh") < readme.index("\n## "), "the commands come before any section"
    install_and_run, test = first_block
    assert "pip install ." in install_and_run and install_and_run.endswith("imaging-exporter")
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert test.replace("bash ", "") in ci


def test_every_exported_metric_is_documented(tmp_path):
    code, out, _ = run_cli("--once", "--config.file=/dev/null")
    documented = {s.name for s in all_specs()}
    exported = {re.sub(r"_(bucket|count|sum|total)$", "", n) for n, _ in parse_metrics(out)}
    # process_*: prometheus_client's standard process collector, documented as a group.
    ours = {n for n in exported if not n.startswith("process_")}
    assert ours <= documented | {"imaging_source_refresh_errors"}, ours - documented
    # --once writes none (its textfile would duplicate node_exporter's own); served mode does.
    assert not exported - ours and all(n in open(os.path.join(ROOT, "docs", "metrics.md")).read()
                                       for n in ("process_cpu_seconds", "--web.disable-exporter-metrics"))
    for spec in all_specs():
        assert spec.name.startswith("imaging_") and spec.help.endswith(".")


def test_readme_prometheus_config_is_valid(tmp_path):
    import subprocess

    from conftest import need_binary
    readme = open(os.path.join(ROOT, "README.md")).read()
    snippet = re.search(r"```yaml\n(scrape_configs:.*?)```", readme, re.S).group(1)
    rules = os.path.join(ROOT, "alerts", "imaging-rules.yml")
    path = tmp_path / "prometheus.yml"
    path.write_text(snippet.replace("/etc/prometheus/rules/imaging-rules.yml", rules))
    r = subprocess.run([need_binary("promtool"), "check", "config", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
