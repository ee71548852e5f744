"""The exporter as a process: node_exporter parity, promtool lint, HTTP and CLI behaviour."""
import subprocess
import urllib.error

import pytest

from conftest import free_port, http_get, need_binary, parse_metrics, run_cli, samples, wait_until

# node_exporter 1.5's default exclusions, so both see the same mounts (tmpfs included).
NODE_FS_TYPES_EXCLUDE = ("^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|"
                         "iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|"
                         "sysfs|tracefs)$")
PAIRS = {"size_bytes": "size_bytes", "free_bytes": "free_bytes", "avail_bytes": "avail_bytes",
         "inodes": "files"}


@pytest.fixture
def node_exporter():
    binary = need_binary("prometheus-node-exporter")
    port = free_port()
    proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
                             "--collector.filesystem"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/metrics", 1)[0] == 200, what="node_exporter")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


def by_mount(metrics, name):
    return {dict(lbl)["mountpoint"]: v for lbl, v in samples(metrics, name).items()}


def test_filesystem_values_equal_node_exporter(node_exporter, exporter_process):
    exp = exporter_process({"host": {"fs_types_exclude": NODE_FS_TYPES_EXCLUDE}})
    # Other processes write to these disks; take the first pair of scrapes that agree.
    mismatches = None
    for _ in range(20):
        ours = exp.scrape()
        theirs = parse_metrics(http_get(node_exporter + "/metrics")[1])
        common = set(by_mount(ours, "imaging_filesystem_size_bytes")) & set(by_mount(theirs, "node_filesystem_size_bytes"))
        assert "/" in common
        mismatches = []
        for mine, node in PAIRS.items():
            a, b = by_mount(ours, f"imaging_filesystem_{mine}"), by_mount(theirs, f"node_filesystem_{node}")
            mismatches += [(mine, m, a[m], b[m]) for m in common if a[m] != b[m]]
        ours_free_inodes = {m: by_mount(ours, "imaging_filesystem_inodes")[m] -
                            by_mount(ours, "imaging_filesystem_inodes_used")[m] for m in common}
        node_free = by_mount(theirs, "node_filesystem_files_free")
        mismatches += [("files_free", m, ours_free_inodes[m], node_free[m]) for m in common
                       if ours_free_inodes[m] != node_free[m]]
        if not mismatches:
            break
    assert not mismatches, mismatches
    assert len(common) >= 1


def test_promtool_check_metrics_is_clean(exporter_process):
    promtool = need_binary("promtool")
    exp = exporter_process({"host": {"profile": "rackspace-firstgen-linux"}})
    text = exp.text()
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr


def test_landing_page_links_to_metrics(exporter_process):
    exp = exporter_process(None, args=["--web.telemetry-path=/custom"])
    status, body = http_get(exp.url + "/")
    assert status == 200 and 'href="/custom"' in body
    assert "imaging_build_info" in exp.text("/custom")
    with pytest.raises(urllib.error.HTTPError) as e:
        http_get(exp.url + "/nothing-here")
    assert e.value.code == 404


def test_collector_failure_is_a_metric_not_a_500(tmp_path):
    from exporter.app import assemble
    from exporter.config import Config

    class BrokenHost:
        def read(self):
            raise RuntimeError("sysfs vanished")
    exp = assemble(Config(state_file=str(tmp_path / "s.json")), {"host": True}, host_source=BrokenHost())
    m = parse_metrics(exp.exposition.raw().decode())
    assert list(samples(m, "imaging_scrape_collector_success", collector="host").values()) == [0]
    assert list(samples(m, "imaging_source_up", source="host").values()) == [0]
    assert samples(m, "imaging_build_info") and not samples(m, "imaging_filesystem_size_bytes")


def test_assemble_builds_only_the_collectors_turned_on(tmp_path, monkeypatch):
    from exporter.app import assemble
    from exporter.config import Config, HostConfig, cloud_config
    monkeypatch.setenv("LINODE_TOKEN", "not-used")
    cfg = Config(host=HostConfig(profile="linode"), state_file=str(tmp_path / "s.json"),
                 clouds=(cloud_config("linode", "acct", api_url="http://127.0.0.1:9/v4"),))
    everything = assemble(cfg)
    assert [(p.provider, p.name) for p in everything.pollers] == [("linode", "acct")]
    assert everything.exposition.cloud is not None and everything.pollers[0].on_refresh is not None
    m = parse_metrics(everything.exposition.raw().decode())
    assert samples(m, "imaging_limit_images") and samples(m, "imaging_source_up", source="linode")
    host_only = assemble(cfg, {"host": True, "linode": False})
    assert host_only.pollers == [] and host_only.exposition.cloud is None
    m = parse_metrics(assemble(cfg, {"host": False}).exposition.raw().decode())
    assert not samples(m, "imaging_limit_images") and not samples(m, "imaging_source_up", source="host")
    assert samples(m, "imaging_source_up", source="linode")


def test_the_app_is_quick_only_for_reads_that_cannot_wait(tmp_path):
    """Exporter.wsgi_app().quick tells exporter.web_handler it may call the app on its loop."""
    from exporter.app import assemble
    from exporter.config import Config, cloud_config

    class Host:
        def __init__(self, quick):
            self.quick = lambda: quick

    def quick(exp, path="/metrics", **environ):
        return exp.wsgi_app().quick({"PATH_INFO": path, **environ})
    cfg = Config(state_file=str(tmp_path / "s.json"))
    assert quick(assemble(cfg, {"host": True}, host_source=Host(True)))
    assert not quick(assemble(cfg, {"host": True}, host_source=Host(False)))
    assert quick(assemble(cfg, {"host": True}, host_source=Host(False)), "/-/healthy")
    assert not quick(assemble(cfg, {"host": True}, host_source=object())), "a reader that cannot tell"
    cloud = Config(state_file=str(tmp_path / "s.json"), clouds=[cloud_config("openstack", "c", cloud="x")])
    exp = assemble(cloud, {"host": True}, host_source=Host(True))
    prometheus = {"HTTP_ACCEPT_ENCODING": "gzip", "HTTP_ACCEPT": "application/openmetrics-text;version=1.0.0"}
    assert not quick(exp, **prometheus), "nothing rendered yet: the first scrape renders the cloud part"
    exp.exposition.render(prometheus["HTTP_ACCEPT"], "gzip")
    assert quick(exp, **prometheus), "the cloud part is held in gzip: read, not rendered"
    assert not quick(exp, HTTP_ACCEPT_ENCODING="gzip"), "text format: not rendered yet"
    assert not quick(exp, HTTP_ACCEPT=prometheus["HTTP_ACCEPT"]), "plain text may be rendered"
    assert not quick(exp, QUERY_STRING="name[]=imaging_images", **prometheus), "name[] renders cloud families"
    slow_host = assemble(cloud, {"host": True}, host_source=Host(False))
    slow_host.exposition.render(prometheus["HTTP_ACCEPT"], "gzip")
    assert not quick(slow_host, **prometheus), "the host read may wait on a mount"


def test_a_small_host_body_is_sent_uncompressed_and_a_large_one_gzipped(tmp_path, monkeypatch):
    import gzip
    from exporter import exposition
    from exporter.app import assemble
    from exporter.config import Config
    exp = assemble(Config(state_file=str(tmp_path / "s.json")), {"host": True}).exposition
    headers, body = exp.render(None, "gzip")
    assert "Content-Encoding" not in dict(headers)
    assert b"imaging_filesystem_size_bytes{" in b"".join(body)
    monkeypatch.setattr(exposition, "SMALL_BODY", 100)
    headers, body = exp.render(None, "gzip")
    assert dict(headers)["Content-Encoding"] == "gzip"
    assert b"imaging_filesystem_size_bytes{" in gzip.decompress(b"".join(body))


def test_process_metrics_are_prometheus_client_s_for_this_process():
    """collectors/process.py reads process_* itself (fewer calls): the same families, help,
    types and values as the library's ProcessCollector."""
    from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
    from exporter.collectors.process import ProcessFamilies
    ours, theirs = CollectorRegistry(), CollectorRegistry()

    class Ours:
        def collect(self):
            return iter(ProcessFamilies())
    ours.register(Ours())
    ProcessCollector(registry=theirs)
    a, b = (parse_metrics(generate_latest(r).decode()) for r in (ours, theirs))
    assert sorted(n for n, _ in a) == sorted(n for n, _ in b) == sorted([
        "process_virtual_memory_bytes", "process_resident_memory_bytes", "process_start_time_seconds",
        "process_cpu_seconds_total", "process_open_fds", "process_max_fds"])
    helps = [l for l in generate_latest(ours).decode().splitlines() if l.startswith("#")]
    assert helps == [l for l in generate_latest(theirs).decode().splitlines() if l.startswith("#")]
    value = lambda m, n: m[(n, frozenset())]  # noqa: E731
    for name in ("process_start_time_seconds", "process_max_fds"):
        assert value(a, name) == value(b, name), name
    for name, slack in (("process_virtual_memory_bytes", 64 << 20), ("process_resident_memory_bytes", 64 << 20),
                        ("process_cpu_seconds_total", 1.0), ("process_open_fds", 4)):
        assert abs(value(a, name) - value(b, name)) <= slack, name


def test_once_prints_one_scrape():
    code, out, err = run_cli("--once", "--config.file=/dev/null")
    assert code == 0, err
    m = parse_metrics(out)
    assert samples(m, "imaging_filesystem_size_bytes", mountpoint="/")
    assert list(samples(m, "imaging_scrape_collector_success", collector="host").values()) == [1]


def test_no_collector_host_disables_it():
    code, out, _ = run_cli("--once", "--no-collector.host", "--config.file=/dev/null")
    assert code == 0 and "imaging_filesystem_size_bytes" not in out and "imaging_build_info" in out


def test_list_profiles_shows_limits_and_sources():
    code, out, _ = run_cli("--list-profiles")
    assert code == 0
    assert "rackspace-firstgen-linux" in out and "250 GB" in out and "3,000,000 inodes" in out
    assert "First-Generation Linux Cloud Server current volume size cannot be more than 250GB" in out
    assert "images_per_account (image_count): 25 images" in out


def test_version():
    code, out, _ = run_cli("--version")
    assert code == 0 and out.startswith("imaging-exporter ")


@pytest.mark.parametrize("args,expected", [
    (["--web.listen-address=nonsense"], "--web.listen-address: 'nonsense' is not host:port"),
    (["--web.telemetry-path=metrics"], "--web.telemetry-path: 'metrics' must start with /"),
])
def test_bad_flags_are_one_line(args, expected):
    code, _, err = run_cli(*args, "--config.file=/dev/null", timeout=20)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_port_in_use_is_one_line():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, _, err = run_cli(f"--web.listen-address=127.0.0.1:{port}", "--config.file=/dev/null", timeout=20)
    assert code == 2 and "cannot listen on" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["--no-such-flag"], ["--log.level=loud"], ["--web.listen-address"]])
def test_bad_command_line_is_one_line(args):
    code, _, err = run_cli(*args, timeout=20)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("imaging-exporter: ")
