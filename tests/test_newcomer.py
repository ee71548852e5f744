"""A newcomer's first minutes, on a fresh copy of the repository: the README's first
command as it stands, the light host-mode install, and a cloud without its extra."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import ROOT, parse_metrics, samples

DEFAULT_PORT = 9847
_VENV_OWN = ("pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence.pth", "__pycache__")


def readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def first_commands():
    block = re.search(r"```sh\n(.*?)```", readme(), re.S).group(1)
    return block.strip().splitlines()


def repository_files():
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True, timeout=60).stdout
        return [f for f in out.decode().split("\0") if f and os.path.isfile(os.path.join(ROOT, f))]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "__pycache__", ".pytest_cache"}
        return [os.path.relpath(os.path.join(d, f), ROOT) for d, dirs, files in os.walk(ROOT)
                for f in files if not (dirs.__setitem__(slice(None), [x for x in dirs if x not in skip]))]


def port_is_free(port):
    with socket.socket() as s:
        # As the exporter binds: connections of an earlier run in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def port_owner(port):
    """What listens on the port, for the failure message."""
    import psutil
    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid:
                p = psutil.Process(c.pid)
                return f"pid {c.pid} ({' '.join(p.cmdline())[:200]})"
    except (psutil.Error, OSError):
        pass
    return "an unknown process"


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory):
    """A copy of the repository's files, as a fresh clone has them, with the README's
    first command run in it (the exporter it starts is stopped at the end)."""
    deadline = time.monotonic() + 30          # an exporter another test is stopping may still hold it
    while not port_is_free(DEFAULT_PORT) and time.monotonic() < deadline:
        time.sleep(0.5)
    if not port_is_free(DEFAULT_PORT):
        pytest.fail(f"port {DEFAULT_PORT} is in use by {port_owner(DEFAULT_PORT)}: the README's first command "
                    "serves there; stop what uses it")
    root = tmp_path_factory.mktemp("fresh-clone")
    for rel in repository_files():
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, rel), os.path.join(root, rel))
    log = open(root / "first-command.log", "wb")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.Popen(["bash", "-c", first_commands()[0]], cwd=root, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    body, deadline = None, time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{DEFAULT_PORT}/metrics", timeout=5) as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        yield root, body, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def test_readme_first_command_installs_and_serves_host_mode(fresh_copy):
    root, body, proc = fresh_copy
    assert body is not None, (f"the README's first command exited {proc.returncode} or never served :{DEFAULT_PORT}: "
                              + (root / "first-command.log").read_text(errors="replace")[-3000:])
    m = parse_metrics(body)
    assert samples(m, "imaging_filesystem_size_bytes", mountpoint="/")
    assert list(samples(m, "imaging_source_up", source="host").values()) == [1]


def _installed(root):
    out = subprocess.run([str(root / ".venv/bin/python"), "-m", "pip", "list", "--format=freeze"],
                         capture_output=True, text=True, timeout=120).stdout
    return {line.split("==")[0].lower() for line in out.splitlines() if "==" in line}


def test_host_install_is_light_and_the_readme_says_how_light(fresh_copy):
    root, _, _ = fresh_copy
    installed = _installed(root)
    assert "imaging-exporter" in installed
    assert not {"openstacksdk", "keystoneauth1", "linode-api4", "requests"} & installed, installed
    site = next((root / ".venv/lib").glob("python3*/site-packages"))
    size = sum(os.path.getsize(os.path.join(d, f)) for entry in os.listdir(site) if entry not in _VENV_OWN
               and not entry.startswith(("pip-", "setuptools-"))
               for d, _, files in (os.walk(site / entry) if (site / entry).is_dir() else [(site, [], [entry])])
               for f in files)
    claim = re.search(r"host\s+mode\s+installs\s+about\s+([0-9.]+)\s+MB\s+in\s+(\d+)\s+packages", readme(), re.I)
    assert claim, "the README states the size of the host-mode install"
    claimed_mb, claimed_packages = float(claim.group(1)), int(claim.group(2))
    assert abs(size / 1e6 - claimed_mb) <= max(1.0, 0.3 * claimed_mb), f"measured {size / 1e6:.1f} MB"
    assert len(installed - {"pip", "setuptools"}) == claimed_packages, sorted(installed)


def test_a_cloud_without_its_extra_is_one_line_naming_the_extra(fresh_copy, tmp_path):
    root, _, _ = fresh_copy
    r = subprocess.run([str(root / ".venv/bin/imaging-exporter"), "--check-config",
                        f"--config.file={root / 'deploy/cloud.example.yaml'}"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, LINODE_TOKEN="x"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 2, r.stderr
    assert "pip install 'imaging-exporter[openstack]'" in lines[0] and "openstacksdk" in lines[0]
    assert "pip install 'imaging-exporter[linode]'" in lines[1] and "linode_api4" in lines[1]
    assert "Traceback" not in r.stderr


_SKIP_MARK = re.compile(r"<!-- not run by the tests: (.+?) -->")


def shell_blocks(rel):
    """(line, commands, reason not run or None) of each ```sh block of a document. A block that
    changes the machine (/etc, systemd) is preceded by `<!-- not run by the tests: why -->`."""
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        text = f.read()
    out = []
    for m in re.finditer(r"```sh\n(.*?)```", text, re.S):
        before = text[:m.start()].rstrip().rsplit("\n", 1)[-1]
        skip = _SKIP_MARK.fullmatch(before.strip())
        out.append((text[:m.start()].count("\n") + 1, m.group(1), skip.group(1) if skip else None))
    return out


def test_every_command_of_the_readme_and_setup_guide_runs_in_order(fresh_copy, tmp_path):
    """After the README's first command: every shell block of README.md, then of
    docs/setup.md, in order, in a shell with the venv on PATH (as the README says), cloud
    credentials pointed at a local clouds.yaml and a dummy Linode token."""
    root, body, _ = fresh_copy
    assert body is not None, "the README's first command did not serve"
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds:\n  prod:\n    auth:\n      auth_url: http://127.0.0.1:1/identity/v3\n"
                      "      username: u\n      password: p\n      project_name: p\n"
                      "      user_domain_name: Default\n      project_domain_name: Default\n")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(PATH=f"{root / '.venv/bin'}:{env['PATH']}", CLOUDS_YAML=str(clouds), LINODE_TOKEN="t0ken")
    blocks = [("README.md", b) for b in shell_blocks("README.md")[1:]] + \
             [("docs/setup.md", b) for b in shell_blocks("docs/setup.md")]
    ran = 0
    for doc, (line, commands, skipped) in blocks:
        if skipped:
            continue
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", commands], cwd=root, env=env, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, f"{doc}:{line}: exit {r.returncode}\n{commands}\n{r.stdout[-2000:]}{r.stderr[-2000:]}"
        ran += 1
    assert ran >= 6
