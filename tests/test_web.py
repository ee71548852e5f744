"""The HTTP server and the exporter-toolkit web config: TLS, client
certificates, basic auth, headers, and Debian's Prometheus scraping over it.

Certificates are made in tmp_path by tests/certificates.py: a CA, a server
certificate for 127.0.0.1, a client certificate, and a second, untrusted CA
with its own client certificate.
"""
from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import pathlib
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import bcrypt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from certificates import write_cert
from conftest import free_port, need_binary, run_cli, wait_until
from web_serving import metrics_app, serving
from exporter import web, web_auth
from exporter.errors import ConfigError
from exporter.web import make_server, parse_listen_address
from exporter.web_config import load_web_config

PASSWORD = "s3cret-Pa55"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
REJECTED = (ssl.SSLError, ConnectionError, http.client.HTTPException, socket.timeout)


# ---- certificates -------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key, ca, _ = write_cert(d, "ca", "test CA", ca=True)
    rogue_cert, rogue_key, rogue_ca, _ = write_cert(d, "rogue-ca", "rogue CA", ca=True)
    _, _, server_crt, server_key = write_cert(d, "server", "127.0.0.1", ca_cert, ca_key, server=True)
    _, _, client_crt, client_key = write_cert(d, "client", "prometheus", ca_cert, ca_key)
    _, _, rogue_crt, rogue_key_path = write_cert(d, "rogue-client", "prometheus", rogue_cert, rogue_key)
    server_key_object = serialization.load_pem_private_key(pathlib.Path(server_key).read_bytes(), None)
    (d / "encrypted.key").write_bytes(server_key_object.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    return dict(dir=d, ca=ca, rogue_ca=rogue_ca, ca_cert=ca_cert, ca_key=ca_key,
                server_crt=server_crt, server_key=server_key, encrypted_key=str(d / "encrypted.key"),
                client_crt=client_crt, client_key=client_key, rogue_crt=rogue_crt, rogue_key=rogue_key_path)


# ---- helpers ------------------------------------------------------------------

def web_config(tmp_path, data):
    path = tmp_path / "web-config.yml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return load_web_config(str(path))


def tls_section(pki, **extra):
    return dict(cert_file=pki["server_crt"], key_file=pki["server_key"], **extra)




def client_context(pki, cert=None, key=None):
    ctx = ssl.create_default_context(cafile=pki["ca"])
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def get(port, path="/metrics", tls=None, auth=None, header=None, host="127.0.0.1"):
    """One request; returns (status, headers, body). TLS if ``tls`` is an SSLContext."""
    if tls is not None:
        conn = http.client.HTTPSConnection(host, port, context=tls, timeout=5)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=5)
    headers = {}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    if header is not None:
        headers["Authorization"] = header
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        return r.status, r.headers, r.read().decode()
    finally:
        conn.close()


def raw_exchange(port, data, timeout=5.0):
    """Send bytes on a plain TCP connection; what came back before the server closed or reset it."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(4096):
                received += chunk
    return received


# ---- plain HTTP ---------------------------------------------------------------

def test_plain_http_without_web_config():
    with serving(None) as port:
        status, _, body = get(port)
    assert status == 200
    assert "imaging_test_value 42.0" in body


def test_listen_on_all_addresses_accepts_ipv4_and_ipv6():
    with serving(None, address=":0") as port:
        assert get(port)[0] == 200
        if socket.has_dualstack_ipv6():
            assert get(port, host="::1")[0] == 200
    if socket.has_ipv6:
        with serving(None, address="[::1]:0") as port:
            assert get(port, host="::1")[0] == 200


def test_listen_address_errors():
    assert parse_listen_address(":9847") == ("", 9847)
    assert parse_listen_address("[::1]:9847") == ("::1", 9847)
    for bad in ("9847", "host:port", "1.2.3.4:99999"):
        with pytest.raises(ConfigError, match="is not host:port"):
            parse_listen_address(bad)
    with serving(None) as port:
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            make_server(f"127.0.0.1:{port}", metrics_app())


# ---- keep-alive ---------------------------------------------------------------

@contextlib.contextmanager
def counting_connections(monkeypatch):
    """Counts the connections the server hands to aiohttp."""
    accepted = []
    real = web.Server.connected

    def connected(self, conn):
        accepted.append(conn)
        return real(self, conn)
    monkeypatch.setattr(web.Server, "connected", connected)
    yield accepted


def test_http11_client_keeps_its_connection(monkeypatch):
    metrics = metrics_app()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/metrics":
            return metrics(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"404 page not found\n"]
    with counting_connections(monkeypatch) as accepted, serving(None, app=app) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            for path in ("/metrics", "/metrics", "/nowhere", "/metrics"):
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
                assert not r.will_close and r.headers["Content-Length"] == str(len(body))
                assert r.version == 11 and r.status == (404 if path == "/nowhere" else 200)
            assert len(accepted) == 1, "four requests on one connection"
        finally:
            conn.close()


@pytest.mark.parametrize("request_bytes", [
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /metrics HTTP/1.0\r\n\r\n",
], ids=["asks-to-close", "http-1.0"])
def test_connection_is_closed_when_it_should_not_be_reused(request_bytes):
    with serving(None) as port:
        answer = raw_exchange(port, request_bytes)      # returns only once the server has closed
    assert answer.startswith(b"HTTP/1.") and answer.count(b"imaging_test_value 42.0") == 1


def test_head_has_no_body_and_keeps_the_connection():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"imaging_test_value 42.0\n"]
    with serving(None, app=app) as port:
        answer = raw_exchange(port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                                    b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: " in head
    assert rest.startswith(b"HTTP/1.1 200"), "the next answer follows the HEAD headers directly: no body"
    assert answer.count(b"imaging_test_value 42.0") == 1


def test_pipelined_requests_and_a_bad_one_after_them():
    with serving(None) as port, socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        answer = b""
        while answer.count(b"imaging_test_value 42.0") < 2:
            answer += s.recv(65536)
        assert answer.count(b"HTTP/1.1 200 OK") == 2
        s.sendall(b"NONSENSE\r\n\r\n")
        rest = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(4096):
                rest += chunk
    assert rest.startswith(b"HTTP/1.0 400 Bad Request") or rest.startswith(b"HTTP/1.1 400 Bad Request")


def test_a_request_body_is_read_off_the_connection_not_run_as_a_request():
    smuggled = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"
    with serving(None) as port:
        answer = raw_exchange(port, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                              % (len(smuggled), smuggled) + b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                              b"Connection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 ") == 2 and b" 404 " not in answer
    assert answer.startswith(b"HTTP/1.1 405") and answer.count(b"imaging_test_value 42.0") == 1


def test_expect_100_continue_post_is_answered_without_waiting_for_the_body():
    with serving(None) as port, socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert b" 405 " in s.recv(1000).split(b"\r\n")[0] + b" "


def test_idle_kept_alive_connection_is_closed_after_the_timeout(monkeypatch):
    monkeypatch.setattr(web, "KEEPALIVE_TIMEOUT", 0.3)
    with serving(None) as port, socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        started, received = time.monotonic(), b""
        while chunk := s.recv(65536):
            received += chunk
        assert received.count(b"HTTP/1.1 200 OK") == 1
        assert 0.25 <= time.monotonic() - started < 4, "closed by the idle timeout, not at once, not never"


def test_an_app_error_closes_the_connection():
    def broken(environ, start_response):
        raise RuntimeError("boom")
    with serving(None, app=broken) as port:
        answer = raw_exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
    assert answer.count(b"HTTP/1.1 500") == 1 and b"Connection: close" in answer


# ---- TLS ----------------------------------------------------------------------

def test_https_scrape_works_and_plain_http_is_refused(tmp_path, pki):
    cfg = web_config(tmp_path, {"tls_server_config": tls_section(pki)})
    with serving(cfg) as port:
        status, _, body = get(port, tls=client_context(pki))
        assert status == 200 and "imaging_test_value 42.0" in body
        # As Go's servers answer (node_exporter): a 400 that says what happened, not a reset.
        answer = raw_exchange(port, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 400 Bad Request\r\n") and b"imaging_test_value" not in answer
        assert answer.endswith(b"Client sent an HTTP request to an HTTPS server.\n")
        assert get(port)[0] == 400
        # The listener still serves TLS after the refused plain-HTTP clients.
        assert get(port, tls=client_context(pki))[0] == 200


def test_client_that_never_handshakes_blocks_nobody(tmp_path, pki, monkeypatch):
    monkeypatch.setattr(web, "HANDSHAKE_TIMEOUT", 2.0)
    cfg = web_config(tmp_path, {"tls_server_config": tls_section(pki)})
    with serving(cfg) as port:
        with socket.create_connection(("127.0.0.1", port)) as silent:
            started = time.monotonic()
            assert get(port, tls=client_context(pki))[0] == 200    # served while `silent` waits
            assert time.monotonic() - started < 1.0
            silent.settimeout(10)
            with contextlib.suppress(ConnectionResetError):
                assert silent.recv(1) == b""                         # the server hung up on it
            assert 1.5 < time.monotonic() - started < 5


def test_tls_versions_and_cipher_suites(tmp_path, pki):
    cfg = web_config(tmp_path, {"tls_server_config": tls_section(
        pki, max_version="TLS12", cipher_suites=["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"],
        curve_preferences=["CurveP256"])})
    with serving(cfg) as port:
        ctx = client_context(pki)
        with socket.create_connection(("127.0.0.1", port)) as s, \
                ctx.wrap_socket(s, server_hostname="127.0.0.1") as tls:
            assert tls.version() == "TLSv1.2"
            assert tls.cipher()[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"
    cfg = web_config(tmp_path, {"tls_server_config": tls_section(pki, min_version="TLS13")})
    with serving(cfg) as port:
        old_client = client_context(pki)
        old_client.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(REJECTED):
            get(port, tls=old_client)
        assert get(port, tls=client_context(pki))[0] == 200


def test_relative_paths_are_relative_to_the_web_config_file(tmp_path, pki):
    d = tmp_path / "conf"
    d.mkdir()
    for name in ("server_crt", "server_key"):
        (d / os.path.basename(pki[name])).write_bytes(pathlib.Path(pki[name]).read_bytes())
    path = d / "web.yml"
    path.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    cfg = load_web_config(str(path))
    assert cfg.tls.cert_file == str(d / "server.crt")


def test_rotated_certificate_is_served_without_restart(tmp_path, pki):
    d = tmp_path / "rotating"
    d.mkdir()
    _, _, crt, key = write_cert(d, "server", "127.0.0.1", pki["ca_cert"], pki["ca_key"], server=True)
    cfg = web_config(tmp_path, {"tls_server_config": {"cert_file": crt, "key_file": key}})

    def served_cert(port):
        with socket.create_connection(("127.0.0.1", port)) as s, \
                client_context(pki).wrap_socket(s, server_hostname="127.0.0.1") as tls:
            return tls.getpeercert(binary_form=True)

    with serving(cfg) as port:
        first = served_cert(port)
        new_dir = tmp_path / "new"
        new_dir.mkdir()
        _, _, new_crt, new_key = write_cert(new_dir, "server", "127.0.0.1", pki["ca_cert"], pki["ca_key"],
                                             server=True)
        os.replace(new_key, key)
        os.replace(new_crt, crt)
        second = served_cert(port)
        assert second != first
        assert second == ssl.PEM_cert_to_DER_cert(pathlib.Path(crt).read_text())
        # A broken replacement is logged and the last good certificate stays in use.
        pathlib.Path(key).write_text("not a key\n")
        assert served_cert(port) == second


# ---- client certificates ------------------------------------------------------

def test_require_and_verify_client_cert(tmp_path, pki):
    cfg = web_config(tmp_path, {"tls_server_config": tls_section(
        pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=pki["ca"])})
    with serving(cfg) as port:
        with pytest.raises(REJECTED):
            get(port, tls=client_context(pki))
        with pytest.raises(REJECTED):
            get(port, tls=client_context(pki, pki["rogue_crt"], pki["rogue_key"]))
        status, _, body = get(port, tls=client_context(pki, pki["client_crt"], pki["client_key"]))
        assert status == 200 and "imaging_test_value" in body


def test_verify_client_cert_if_given(tmp_path, pki):
    cfg = web_config(tmp_path, {"tls_server_config": tls_section(
        pki, client_auth_type="VerifyClientCertIfGiven", client_ca_file=pki["ca"])})
    with serving(cfg) as port:
        assert get(port, tls=client_context(pki))[0] == 200
        assert get(port, tls=client_context(pki, pki["client_crt"], pki["client_key"]))[0] == 200
        with pytest.raises(REJECTED):
            get(port, tls=client_context(pki, pki["rogue_crt"], pki["rogue_key"]))


# ---- basic auth and headers ---------------------------------------------------

def test_basic_auth(tmp_path):
    cfg = web_config(tmp_path, {"basic_auth_users": {"prometheus": HASH}})
    with serving(cfg) as port:
        status, _, body = get(port, auth=("prometheus", PASSWORD))
        assert status == 200 and "imaging_test_value" in body
        for auth, header in ((("prometheus", "wrong"), None), (("nobody", PASSWORD), None),
                             (None, None), (None, "Basic !!notbase64"), (None, "Basic \u00e9t\u00e9"), (None, "Bearer abc"),
                             (("prometheus", "x" * 100), None)):
            status, headers, body = get(port, auth=auth, header=header)
            assert status == 401, (auth, header)
            assert headers["WWW-Authenticate"] == 'Basic realm="imaging-exporter"'
            assert "imaging_test_value" not in body


def test_successful_bcrypt_checks_are_cached(tmp_path, monkeypatch):
    calls = []
    real = bcrypt.checkpw
    monkeypatch.setattr(web_auth.bcrypt, "checkpw", lambda pw, h: calls.append(pw) or real(pw, h))
    cfg = web_config(tmp_path, {"basic_auth_users": {"prometheus": HASH}})
    with serving(cfg) as port:
        for _ in range(3):
            assert get(port, auth=("prometheus", PASSWORD))[0] == 200
        assert len(calls) == 1
        assert get(port, auth=("prometheus", "wrong"))[0] == 401      # the cache is no bypass
        assert get(port, auth=("prometheus", PASSWORD))[0] == 200
        assert len(calls) == 2


def test_headers_on_every_response(tmp_path):
    cfg = web_config(tmp_path, {
        "http_server_config": {"headers": {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff",
                                           "Content-Security-Policy": "default-src 'none'",
                                           "Strict-Transport-Security": ""}},
        "basic_auth_users": {"prometheus": HASH}})
    with serving(cfg) as port:
        for auth, status in ((("prometheus", PASSWORD), 200), (None, 401)):
            got, headers, _ = get(port, auth=auth)
            assert got == status
            assert headers["X-Frame-Options"] == "deny"
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert headers["Content-Security-Policy"] == "default-src 'none'"
            assert "Strict-Transport-Security" not in headers      # blank means unset


def test_empty_web_config_is_plain_http(tmp_path):
    cfg = web_config(tmp_path, "")
    assert cfg.tls is None and not cfg.users and not cfg.headers
    cfg = web_config(tmp_path, "tls_server_config:\nbasic_auth_users: {}\n")
    assert cfg.tls is None and not cfg.users


# ---- Debian's Prometheus scrapes the server -----------------------------------

def test_prometheus_scrapes_over_tls_with_basic_auth(tmp_path, pki, monkeypatch):
    prometheus = need_binary("prometheus")
    cfg = web_config(tmp_path, {"tls_server_config": tls_section(pki), "basic_auth_users": {"prometheus": HASH}})
    with counting_connections(monkeypatch) as accepted, serving(cfg) as port:
        def job(name, password):
            return {"job_name": name, "scheme": "https", "scrape_interval": "1s", "scrape_timeout": "1s",
                    "tls_config": {"ca_file": pki["ca"]},
                    "basic_auth": {"username": "prometheus", "password": password},
                    "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(
            {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
             "scrape_configs": [job("good", PASSWORD), job("wrong_password", "nope")]}))
        prom_port = free_port()
        log = open(tmp_path / "prometheus.log", "wb")
        proc = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            def query(q):
                url = f"http://127.0.0.1:{prom_port}/api/v1/query?query={urllib.parse.quote(q)}"
                with urllib.request.urlopen(url, timeout=2) as r:
                    return {s["metric"].get("job"): s["value"][1] for s in json.load(r)["data"]["result"]}

            def scraped():
                assert proc.poll() is None, "prometheus exited"
                up = query("up")
                return up if len(up) == 2 else None

            up = wait_until(scraped, timeout=30, interval=0.5, what="Prometheus to scrape both jobs")
            assert up == {"good": "1", "wrong_password": "0"}
            assert query("imaging_test_value") == {"good": "42"}
            with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/targets", timeout=2) as r:
                errors = {t["labels"]["job"]: t["lastError"] for t in json.load(r)["data"]["activeTargets"]}
            assert "401" in errors["wrong_password"] and errors["good"] == ""
            # Prometheus keeps its connections: more scrapes, no more TLS handshakes.
            connections = len(accepted)
            scrapes = lambda: float(query('count_over_time(up{job="good"}[1m])')["good"])  # noqa: E731
            before = scrapes()
            wait_until(lambda: scrapes() >= before + 3, timeout=20, interval=0.5, what="three more scrapes")
            assert len(accepted) == connections <= 4
        except BaseException:
            log.flush()
            print((tmp_path / "prometheus.log").read_text(errors="replace")[-3000:])
            raise
        finally:
            proc.kill()
            proc.wait(10)
            log.close()


# ---- bad web configs: one clear line each -------------------------------------

BAD = {
    "bad_yaml": ("tls_server_config: [\n", "not valid YAML at line"),
    "not_a_mapping": ("- a\n- b\n", "the top level must be a mapping, not a list"),
    "duplicate_key": ("basic_auth_users:\n  a: x\n  a: y\n", "duplicate key 'a'"),
    "unknown_top_key": ("basic_auth_user: {}\n", "basic_auth_user: unknown key"),
    "rate_limit": ("rate_limit: {interval: 1s, burst: 2}\n", "rate_limit: is not supported"),
    "unknown_tls_key": ("tls_server_config: {cert_file: '{crt}', key_file: '{key}', certfile: x}\n",
                        "tls_server_config.certfile: unknown key (did you mean 'cert_file'?)"),
    "inline_cert": ("tls_server_config: {cert: abc, cert_file: '{crt}', key_file: '{key}'}\n",
                    "tls_server_config.cert: inline certificates are not supported; use cert_file"),
    "allowed_sans": ("tls_server_config: {cert_file: '{crt}', key_file: '{key}', client_allowed_sans: [a]}\n",
                     "tls_server_config.client_allowed_sans: is not supported"),
    "tls_not_mapping": ("tls_server_config: yes\n", "tls_server_config: must be a mapping"),
    "cert_without_key": ("tls_server_config: {cert_file: '{crt}'}\n", "key_file is required"),
    "missing_cert": ("tls_server_config: {cert_file: /nonexistent.crt, key_file: '{key}'}\n",
                     "tls_server_config.cert_file: cannot read /nonexistent.crt: No such file or directory"),
    "cert_is_directory": ("tls_server_config: {cert_file: /tmp, key_file: '{key}'}\n",
                          "tls_server_config.cert_file: cannot read /tmp: is not a regular file"),
    "missing_key": ("tls_server_config: {cert_file: '{crt}', key_file: /nonexistent.key}\n",
                    "tls_server_config.key_file: cannot read /nonexistent.key"),
    "key_does_not_match": ("tls_server_config: {cert_file: '{crt}', key_file: '{client_key}'}\n",
                           "tls_server_config: key_file {client_key} does not match cert_file {crt}"),
    "encrypted_key": ("tls_server_config: {cert_file: '{crt}', key_file: '{encrypted_key}'}\n",
                      "tls_server_config.key_file: {encrypted_key} is encrypted; the key must be unencrypted"),
    "cert_not_pem": ("tls_server_config: {cert_file: '{config}', key_file: '{key}'}\n",
                     "tls_server_config: cert_file {config} or key_file {key} is not a PEM certificate and key"),
    "missing_ca": ("tls_server_config: {cert_file: '{crt}', key_file: '{key}', "
                   "client_auth_type: RequireAndVerifyClientCert, client_ca_file: /nonexistent-ca.crt}\n",
                   "tls_server_config.client_ca_file: cannot read /nonexistent-ca.crt"),
    "ca_not_pem": ("tls_server_config: {cert_file: '{crt}', key_file: '{key}', "
                   "client_auth_type: RequireAndVerifyClientCert, client_ca_file: '{config}'}\n",
                   "tls_server_config.client_ca_file: no PEM CA certificate in"),
    "unknown_client_auth": ("tls_server_config: {cert_file: '{crt}', key_file: '{key}', client_auth_type: Optional}\n",
                            "tls_server_config.client_auth_type: unknown value 'Optional'; one of: NoClientCert, "
                            "VerifyClientCertIfGiven, RequireAndVerifyClientCert"),
    "unverified_client_auth": ("tls_server_config: {cert_file: '{crt}', key_file: '{key}', "
                               "client_auth_type: RequireAnyClientCert, client_ca_file: '{ca}'}\n",
                               "RequireAnyClientCert is not supported (it accepts a client certificate "
                               "without verifying it"),
    "ca_without_client_auth": ("tls_server_config: {cert_file: '{crt}', key_file: '{key}', client_ca_file: '{ca}'}\n",
                               "client_ca_file is set but client_auth_type is NoClientCert"),
    "verify_without_ca": ("tls_server_config: {cert_file: '{crt}', key_file: '{key}', "
                          "client_auth_type: RequireAndVerifyClientCert}\n",
                          "client_auth_type RequireAndVerifyClientCert needs client_ca_file"),
    "unknown_min_version": ("tls_server_config: {cert_file: '{crt}', key_file: '{key}', min_version: TLS1.2}\n",
                            "tls_server_config.min_version: unknown value 'TLS1.2'; one of: TLS12, TLS13"),
    "old_min_version": ("tls_server_config: {cert_file: '{crt}', key_file: '{key}', min_version: TLS11}\n",
                        "min_version: TLS11 is not supported (TLS 1.0 and 1.1 are insecure"),
    "min_above_max": ("tls_server_config: {cert_file: '{crt}', key_file: '{key}', min_version: TLS13, "
                      "max_version: TLS12}\n", "min_version TLS13 is above max_version TLS12"),
    "unknown_cipher": ("tls_server_config: {cert_file: '{crt}', key_file: '{key}', cipher_suites: [RC4]}\n",
                       "tls_server_config.cipher_suites: unknown cipher suite 'RC4'"),
    "tls13_cipher": ("tls_server_config: {cert_file: '{crt}', key_file: '{key}', "
                     "cipher_suites: [TLS_AES_128_GCM_SHA256]}\n", "is a TLS 1.3 suite"),
    "unknown_curve": ("tls_server_config: {cert_file: '{crt}', key_file: '{key}', curve_preferences: [P256]}\n",
                      "tls_server_config.curve_preferences: unknown curve 'P256'"),
    "two_curves": ("tls_server_config: {cert_file: '{crt}', key_file: '{key}', "
                   "curve_preferences: [X25519, CurveP256]}\n", "only one curve is supported"),
    "prefer_not_bool": ("tls_server_config: {cert_file: '{crt}', key_file: '{key}', "
                        "prefer_server_cipher_suites: maybe}\n", "must be true or false, not a string"),
    "unknown_http_key": ("http_server_config: {http3: true}\n", "http_server_config.http3: unknown key"),
    "http2_not_bool": ("http_server_config: {http2: 'no'}\n", "http_server_config.http2: must be true or false"),
    "forbidden_header": ("http_server_config: {headers: {Server: nginx}}\n",
                         "http_server_config.headers.Server: this HTTP header can not be configured"),
    "bad_header_value": ("http_server_config: {headers: {X-Frame-Options: allow}}\n",
                         "http_server_config.headers.X-Frame-Options: invalid value 'allow'; one of: deny, sameorigin"),
    "plain_password": ("basic_auth_users: {prometheus: hunter2}\n",
                       "basic_auth_users.prometheus: is not a bcrypt hash"),
    "truncated_hash": ("basic_auth_users: {prometheus: '" + HASH[:-1] + "'}\n",
                       "basic_auth_users.prometheus: is not a bcrypt hash"),
    "numeric_user": ("basic_auth_users: {123: '" + HASH + "'}\n", "user name 123 must be a non-empty string"),
    "users_not_mapping": ("basic_auth_users: [a, b]\n", "basic_auth_users: must be a mapping, not a list"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_web_config_is_one_clear_line(tmp_path, pki, name):
    text, expected = BAD[name]
    path = tmp_path / "web.yml"
    for k in ("crt", "key", "client_key", "encrypted_key", "ca", "config"):
        value = str(path) if k == "config" else pki[{"crt": "server_crt", "key": "server_key"}.get(k, k)]
        text, expected = text.replace("{%s}" % k, value), expected.replace("{%s}" % k, value)
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_web_config(str(path))
    assert len(e.value.problems) == 1, e.value.problems
    line = e.value.problems[0]
    assert line.startswith(f"{path}: ") and "\n" not in line and "Traceback" not in line
    assert expected in line
    assert "hunter2" not in line                     # a mistaken plain-text password is never echoed


def test_unreadable_web_config(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_web_config(str(tmp_path / "missing.yml"))
    assert e.value.problems == [f"{tmp_path / 'missing.yml'}: cannot read web config file: No such file or directory"]


def test_every_problem_is_reported(tmp_path):
    path = tmp_path / "web.yml"
    path.write_text("tls_server_config: {min_version: TLS9, foo: 1}\nbasic_auth_users: {a: b}\nbar: 1\n")
    with pytest.raises(ConfigError) as e:
        load_web_config(str(path))
    assert len(e.value.problems) == 4, e.value.problems


def test_cli_check_config_reports_bad_web_config_without_traceback(tmp_path):
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users: {prometheus: hunter2}\n")
    code, _, stderr = run_cli("--check-config", f"--web.config.file={path}")
    assert code == 2
    assert stderr.strip().splitlines() == [
        f"imaging-exporter: {path}: basic_auth_users.prometheus: is not a bcrypt hash (like $2y$10$ and 53 "
        "more characters); create one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"]


def test_an_app_that_says_it_is_quick_is_called_on_the_event_loop():
    """exporter.web_handler calls the app on the loop when app.quick(environ) says so
    (host mode, local disks only), on its pool otherwise."""
    ran = {}

    def app(environ, start_response):
        ran[environ["PATH_INFO"]] = threading.current_thread().name
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]
    app.quick = lambda environ: environ["PATH_INFO"] == "/fast"
    server = make_server("127.0.0.1:0", app)
    thread = threading.Thread(target=server.serve_forever, name="the-loop", daemon=True)
    thread.start()
    try:
        for path in ("/fast", "/slow"):
            with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}{path}", timeout=10) as r:
                assert r.read() == b"ok\n"
    finally:
        server.shutdown()
        server.server_close()
    assert ran["/fast"] == "the-loop"
    assert ran["/slow"].startswith("http"), ran


def test_after_a_kept_alive_request_the_loop_sleeps_until_the_keepalive_deadline():
    """The head deadline a request met does not wake the loop: with one connection open the
    sweep is due when that connection's keep-alive wait ends (issue 19: a wake per scrape)."""
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]
    server = make_server("127.0.0.1:0", app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        for _ in range(2):
            conn.request("GET", "/metrics")
            assert conn.getresponse().read() == b"ok\n"
        time.sleep(0.2)
        due = server._sweep_timer.when() - server.loop.time()
        assert web.KEEPALIVE_TIMEOUT - 5 < due <= web.KEEPALIVE_TIMEOUT, due
    finally:
        conn.close()
        server.shutdown()
        server.server_close()


def test_shutdown_right_after_start_leaves_no_failed_thread(monkeypatch):
    """A server shut down (and its sockets closed) before its thread began serving: the
    thread ends quietly instead of failing on a closed socket."""
    failures = []
    monkeypatch.setattr(threading, "excepthook", lambda args: failures.append(args.exc_value))
    for _ in range(100):
        server = make_server("127.0.0.1:0", metrics_app())
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        server.shutdown()
        server.server_close()
        thread.join(5)
        assert not thread.is_alive()
    assert failures == []
