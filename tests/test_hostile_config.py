"""Config and web-config files from a careless operator (issue 15, case 10):
every one is one line on stderr, exit 2, no traceback, in bounded time and
memory. Hang-prone inputs (FIFO, /dev/zero) run as a process with a timeout;
the rest through cli.main in this process.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from exporter import cli, config as config_mod

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join('*' + p for _ in range(9))}]\n"
    for p, c in zip("abcdefgh", "bcdefghi")) + "host: *i\n"

BAD = {
    "utf16": "host:\n  profile: generic\n".encode("utf-16"),
    "utf16-no-bom": "host:\n  profile: generic\n".encode("utf-16-le"),
    "utf32": "host: {}\n".encode("utf-32"),
    "latin1": "host:\n  server_id: caf\xe9\n".encode("latin-1"),
    "nul": b"host: {}\n\x00\n",
    "deep": ("a: " + "[" * 5000 + "]" * 5000 + "\n").encode(),
    "deep-mapping": ("".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "x: 1\n").encode(),
    "400-digits": ("clouds:\n- {name: a, provider: linode, image_quota: 1" + "0" * 400 + "}\n").encode(),
    "huge-float": b"host:\n  limits:\n  - {name: x, measure: used_bytes, value: 1.0e+400}\n",
    "list-key": b"? [a, b]\n: 1\n",
    "mapping-key": b"{? {a: 1} : 2}\n",
    "billion-laughs": BILLION_LAUGHS.encode(),
    "alias": b"host: &h {profile: generic}\nother: *h\n",
    "duplicate": b"host: {}\nhost: {profile: generic}\n",
    "duplicate-nested": b"host:\n  profile: generic\n  profile: rackspace-firstgen-linux\n",
    "interval-1ms": b"clouds:\n- {name: a, provider: linode, refresh_interval: 1ms}\n",
    "interval-110000d": b"clouds:\n- {name: a, provider: linode, refresh_interval: 110000d}\n",
    "timeout-0": b"clouds:\n- {name: a, provider: linode, request_timeout: 0s}\n",
    "lookback-huge": b"clouds:\n- {name: a, provider: linode, lookback: 99999d}\n",
    "mount-timeout-long": b"host:\n  mount_timeout: 2h\n",
    "size-overflow": b"clouds:\n- {name: a, provider: linode, image_bytes_quota: 1e400GB}\n",
    "tab": b"host:\n\tprofile: generic\n",
}
EXPECTED = {
    "utf16": "UTF-16", "utf16-no-bom": "NUL", "utf32": "UTF-32", "latin1": "not UTF-8", "nul": "NUL",
    "deep": "nested deeper", "deep-mapping": "nested deeper", "400-digits": "too large",
    "huge-float": "not a finite number", "list-key": "mapping key", "mapping-key": "mapping key",
    "billion-laughs": "aliases", "alias": "aliases", "duplicate": "duplicate key 'host'",
    "duplicate-nested": "duplicate key 'profile'", "interval-1ms": "outside", "interval-110000d": "outside 1s..1d",
    "timeout-0": "outside 1s..10m", "lookback-huge": "outside 1h..90d", "mount-timeout-long": "outside 100ms..5m",
    "size-overflow": "not a size", "tab": "not valid YAML",
}


def _main(capsys, *args):
    code = cli.main(list(args))
    err = capsys.readouterr().err
    return code, err


CONFIG_KEYS_ONLY = ("interval", "timeout", "lookback", "mount", "size", "400", "huge")
CASES = [("--config.file", n) for n in BAD] + [("--web.config.file", n) for n in BAD
                                               if not n.startswith(CONFIG_KEYS_ONLY)]


@pytest.mark.parametrize("flag,name", CASES)
def test_bad_file_is_one_line_and_exit_2(tmp_path, capsys, name, flag):
    path = tmp_path / "file.yml"
    path.write_bytes(BAD[name])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    code, err = _main(capsys, "--check-config", f"{flag}={path}")
    assert time.monotonic() - started < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000, "KiB: no expansion"
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert EXPECTED[name] in lines[0] and "Traceback" not in err


def test_refresh_interval_minimum_is_10s_without_the_test_override(monkeypatch):
    monkeypatch.delenv("IMAGING_EXPORTER_MIN_REFRESH_INTERVAL", raising=False)
    with pytest.raises(config_mod.ConfigError, match=r"'5s' is outside 10s\.\.1d"):
        config_mod.parse({"clouds": [{"name": "a", "provider": "linode", "refresh_interval": "5s"}]})
    cfg = config_mod.parse({"clouds": [{"name": "a", "provider": "linode", "refresh_interval": "10s"}]})
    assert cfg.clouds[0].refresh_interval == 10
    monkeypatch.setenv("IMAGING_EXPORTER_MIN_REFRESH_INTERVAL", "1ms")      # never below 1 s
    with pytest.raises(config_mod.ConfigError, match="outside 1s"):
        config_mod.parse({"clouds": [{"name": "a", "provider": "linode", "refresh_interval": "500ms"}]})


def test_20_mb_config_is_refused_at_once(tmp_path, capsys):
    path = tmp_path / "big.yml"
    path.write_bytes(b"# padding\n" * 2_000_000)
    started = time.monotonic()
    code, err = _main(capsys, "--check-config", f"--config.file={path}")
    assert time.monotonic() - started < 1.0
    assert code == 2 and "more than the 1,048,576 allowed" in err and len(err.strip().splitlines()) == 1


def _run(args, timeout=15):
    return subprocess.run([sys.executable, "-m", "exporter", *args], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("what", ["config", "web config", "certificate"])
@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_fifo_or_dev_zero_is_refused_without_hanging(tmp_path, what, special):
    if special == "fifo":
        target = tmp_path / "special"
        os.mkfifo(target)
    else:
        target = special
    if what == "config":
        args = [f"--config.file={target}"]
    elif what == "web config":
        args = [f"--web.config.file={target}"]
    else:
        web = tmp_path / "web.yml"
        web.write_text(f"tls_server_config:\n  cert_file: {target}\n  key_file: {target}\n")
        args = [f"--web.config.file={web}"]
    r = _run(["--check-config", *args])          # a hang would be a TimeoutExpired
    assert r.returncode == 2 and "not a regular file" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2, r.stderr       # cert_file and key_file lines
