"""The exporter-toolkit web configuration file (--web.config.file).

Same format as node_exporter's: https://github.com/prometheus/exporter-toolkit/
blob/master/docs/web-configuration.md. Everything is checked when the file is
loaded, certificates included, and every problem is one line of a ConfigError.
Unknown keys are errors, and so are the parts of the format this exporter
does not implement: a setting is never silently ignored.

Not implemented, each rejected with the reason: inline ``cert``/``key``/
``client_ca``, ``client_allowed_sans``, ``rate_limit``, several curves in
``curve_preferences`` (Python's ssl module sets one), TLS 1.0/1.1, and the
client_auth_types that accept a certificate without verifying it
(RequestClientCert, RequireAnyClientCert: Python's ssl module cannot; the
toolkit calls them insecure anyway).

Certificate files are re-read when they change (see TLSConfig.signature), so
rotated certificates are served without a restart; the rest needs a restart.
"""
from __future__ import annotations

import difflib
import os
import re
import ssl
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from . import yamlfile
from .errors import ConfigError

MAX_PEM_BYTES = 1024 * 1024     # certificate chains and CA bundles are tens of KiB

# client_auth_type -> ssl verify mode; None: valid in the toolkit, not here.
CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    "RequestClientCert": None,
    "RequireAnyClientCert": None,
    "RequireClientCert": None,
}
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3,
                "TLS10": None, "TLS11": None}
# Go's tls.CipherSuites() for TLS <= 1.2, by Go name -> OpenSSL name.
CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}
# The toolkit's extraHTTPHeaders: the only headers that may be set, and the
# allowed values where they are an enumeration.
HEADERS = {"Strict-Transport-Security": None, "X-Content-Type-Options": ("nosniff",),
           "X-Frame-Options": ("deny", "sameorigin"), "X-XSS-Protection": None,
           "Content-Security-Policy": None}
BCRYPT_HASH = re.compile(r"^\$2[abxy]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS_KEYS = ("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version",
             "max_version", "cipher_suites", "prefer_server_cipher_suites", "curve_preferences")
_TLS_UNSUPPORTED = {
    "cert": "inline certificates are not supported; use cert_file",
    "key": "inline keys are not supported; use key_file",
    "client_ca": "inline CA certificates are not supported; use client_ca_file",
    "client_allowed_sans": "is not supported by this exporter",
}
_HTTP_KEYS = ("headers", "http2")


@dataclass(frozen=True)
class TLSConfig:
    cert_file: str
    key_file: str
    verify_mode: ssl.VerifyMode = ssl.CERT_NONE
    client_ca_file: str = ""
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    ciphers: Tuple[str, ...] = ()          # OpenSSL names
    curve: str = ""                        # OpenSSL name
    prefer_server_cipher_suites: bool = True

    def files(self):
        return [f for f in (self.cert_file, self.key_file, self.client_ca_file) if f]

    def signature(self):
        """Changes when a certificate or key file changes (rotation)."""
        sig = []
        for f in self.files():
            try:
                st = os.stat(f)
                sig.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                sig.append(None)
        return tuple(sig)

    def context(self) -> ssl.SSLContext:
        """Build the server SSLContext from the files; ConfigError if they are bad."""
        problems = []
        for name in ("cert_file", "key_file", "client_ca_file"):
            path = getattr(self, name)
            if not path:
                continue
            try:
                # Regular files only and bounded: a FIFO or /dev/zero must not hang or fill memory.
                data = yamlfile.read_regular_file(path, MAX_PEM_BYTES)
            except (OSError, ValueError) as e:
                problems.append(f"tls_server_config.{name}: cannot read {path}: {getattr(e, 'strerror', None) or e}")
                continue
            if name == "key_file" and b"ENCRYPTED" in data:
                problems.append(f"tls_server_config.key_file: {path} is encrypted; the key must be unencrypted")
        if problems:
            raise ConfigError(problems)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version, ctx.maximum_version = self.min_version, self.max_version
        try:
            # The password callback keeps OpenSSL from ever prompting on a tty.
            ctx.load_cert_chain(self.cert_file, self.key_file, password=lambda: b"")
        except ssl.SSLError as e:
            if e.reason == "KEY_VALUES_MISMATCH":
                raise ConfigError(f"tls_server_config: key_file {self.key_file} does not match "
                                  f"cert_file {self.cert_file}") from None
            raise ConfigError(f"tls_server_config: cert_file {self.cert_file} or key_file {self.key_file} "
                              f"is not a PEM certificate and key: {_ssl_reason(e)}") from None
        if self.client_ca_file:
            try:
                ctx.load_verify_locations(cafile=self.client_ca_file)
            except ssl.SSLError as e:
                raise ConfigError(f"tls_server_config.client_ca_file: no PEM CA certificate in "
                                  f"{self.client_ca_file}: {_ssl_reason(e)}") from None
        ctx.verify_mode = self.verify_mode
        if self.ciphers:
            ctx.set_ciphers(":".join(self.ciphers))
        if self.curve:
            ctx.set_ecdh_curve(self.curve)
        if self.prefer_server_cipher_suites:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        else:
            ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        return ctx


@dataclass(frozen=True)
class WebConfig:
    tls: Optional[TLSConfig] = None
    users: Dict[str, bytes] = field(default_factory=dict)     # user -> bcrypt hash
    headers: Dict[str, str] = field(default_factory=dict)
    path: str = ""


def _ssl_reason(e):
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", e.reason or e.strerror or str(e))


def _kind(v):
    return {dict: "a mapping", list: "a list", str: "a string", bool: "true/false",
            type(None): "empty"}.get(type(v), "a number" if isinstance(v, (int, float)) else type(v).__name__)


class _Parser:
    def __init__(self, base_dir):
        self.base_dir = base_dir
        self.problems = []

    def add(self, key, msg):
        self.problems.append(f"{key}: {msg}")

    def mapping(self, key, v):
        if v is None:
            return {}
        if not isinstance(v, dict):
            self.add(key, f"must be a mapping, not {_kind(v)}")
            return {}
        return v

    def keys(self, key, mapping, known, unsupported=None):
        for k in mapping:
            name = f"{key}.{k}" if key else str(k)
            if unsupported and k in unsupported:
                self.add(name, unsupported[k])
            elif k not in known:
                close = difflib.get_close_matches(str(k), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.add(name, f"unknown key{hint}; known keys: {', '.join(known)}")

    def string(self, key, mapping, name, default=""):
        v = mapping.get(name)
        if v is None:
            return default
        if not isinstance(v, str):
            self.add(f"{key}.{name}", f"must be a string, not {_kind(v)}")
            return default
        return v

    def path(self, key, mapping, name):
        """Relative paths are relative to the web config file, as in the toolkit."""
        v = self.string(key, mapping, name)
        return os.path.join(self.base_dir, v) if v else ""

    def string_list(self, key, mapping, name):
        v = mapping.get(name)
        if v is None:
            return []
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            self.add(f"{key}.{name}", "must be a list of strings")
            return []
        return v

    def choice(self, key, mapping, name, table, default, unsupported_because=""):
        """A value from ``table``; values mapped to None are valid in the toolkit but not here."""
        v = self.string(key, mapping, name)
        if not v:
            return default
        known = ", ".join(k for k, x in table.items() if x is not None)
        if v not in table:
            self.add(f"{key}.{name}", f"unknown value {v!r}; one of: {known}")
        elif table[v] is None:
            self.add(f"{key}.{name}", f"{v} is not supported ({unsupported_because}); use one of: {known}")
        else:
            return table[v]
        return default

    def tls(self, raw) -> Optional[TLSConfig]:
        key = "tls_server_config"
        raw = self.mapping(key, raw)
        self.keys(key, raw, _TLS_KEYS, _TLS_UNSUPPORTED)
        cert, tls_key = self.path(key, raw, "cert_file"), self.path(key, raw, "key_file")
        ca = self.path(key, raw, "client_ca_file")
        verify = self.choice(key, raw, "client_auth_type", CLIENT_AUTH_TYPES, ssl.CERT_NONE,
                             "it accepts a client certificate without verifying it, which Python's ssl "
                             "module cannot do and the toolkit calls insecure")
        if ca and raw.get("client_auth_type") in (None, "", "NoClientCert"):
            self.add(key, "client_ca_file is set but client_auth_type is NoClientCert; "
                          "set client_auth_type: RequireAndVerifyClientCert")
        if verify != ssl.CERT_NONE and not ca:
            self.add(key, f"client_auth_type {raw['client_auth_type']} needs client_ca_file")
        old = "TLS 1.0 and 1.1 are insecure and OpenSSL disables them"
        lo = self.choice(key, raw, "min_version", TLS_VERSIONS, ssl.TLSVersion.TLSv1_2, old)
        hi = self.choice(key, raw, "max_version", TLS_VERSIONS, ssl.TLSVersion.TLSv1_3, old)
        if lo > hi:
            self.add(key, f"min_version {raw['min_version']} is above max_version {raw.get('max_version', 'TLS13')}")
        ciphers = []
        for name in self.string_list(key, raw, "cipher_suites"):
            if name in TLS13_SUITES:
                self.add(f"{key}.cipher_suites", f"{name} is a TLS 1.3 suite; as in Go, TLS 1.3 suites "
                                                 "cannot be configured: list TLS 1.2 suites only")
            elif name not in CIPHER_SUITES:
                self.add(f"{key}.cipher_suites", f"unknown cipher suite {name!r}; one of: {', '.join(CIPHER_SUITES)}")
            else:
                ciphers.append(CIPHER_SUITES[name])
        curves = self.string_list(key, raw, "curve_preferences")
        for name in curves:
            if name not in CURVES:
                self.add(f"{key}.curve_preferences", f"unknown curve {name!r}; one of: {', '.join(CURVES)}")
        if len(curves) > 1:
            self.add(f"{key}.curve_preferences", "only one curve is supported (Python's ssl module "
                                                 "cannot set a preference list); list exactly one")
        prefer = raw.get("prefer_server_cipher_suites", True)
        if not isinstance(prefer, bool):
            self.add(f"{key}.prefer_server_cipher_suites", f"must be true or false, not {_kind(prefer)}")
            prefer = True
        if not (cert or tls_key or ca or raw.get("client_auth_type")):
            return None     # the toolkit's TLSConfig.IsEnabled: no TLS
        if not cert:
            self.add(key, "cert_file is required when TLS is configured")
        if not tls_key:
            self.add(key, "key_file is required when TLS is configured")
        if not (cert and tls_key):
            return None
        return TLSConfig(cert_file=cert, key_file=tls_key, verify_mode=verify, client_ca_file=ca,
                         min_version=lo, max_version=hi, ciphers=tuple(ciphers),
                         curve=CURVES.get(curves[0], "") if len(curves) == 1 else "",
                         prefer_server_cipher_suites=prefer)

    def headers(self, raw):
        key = "http_server_config"
        raw = self.mapping(key, raw)
        self.keys(key, raw, _HTTP_KEYS)
        # http2 is accepted for compatibility: this server only speaks HTTP/1.x,
        # which is what http2: false asks for and what Prometheus falls back to.
        if not isinstance(raw.get("http2", True), bool):
            self.add(f"{key}.http2", f"must be true or false, not {_kind(raw['http2'])}")
        headers = {}
        for name, value in self.mapping(f"{key}.headers", raw.get("headers")).items():
            hk = f"{key}.headers.{name}"
            if name not in HEADERS:
                self.add(hk, f"this HTTP header can not be configured; one of: {', '.join(HEADERS)}")
            elif value is None or value == "":
                continue    # "Unset if blank"
            elif not isinstance(value, str) or "\n" in value or "\r" in value:
                self.add(hk, "must be a one-line string")
            elif HEADERS[name] and value not in HEADERS[name]:
                self.add(hk, f"invalid value {value!r}; one of: {', '.join(HEADERS[name])}")
            else:
                headers[name] = value
        return headers

    def users(self, raw):
        key = "basic_auth_users"
        users = {}
        for user, hashed in self.mapping(key, raw).items():
            if not isinstance(user, str) or ":" in user or not user:
                self.add(key, f"user name {user!r} must be a non-empty string without ':' (quote it in YAML)")
            elif not isinstance(hashed, str) or not BCRYPT_HASH.match(hashed):
                # Never echo the value: it may be a plain-text password by mistake.
                self.add(f"{key}.{user}", "is not a bcrypt hash (like $2y$10$ and 53 more characters); "
                                          "create one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'")
            else:
                users[user] = hashed.encode("ascii")
        return users


def load_web_config(path) -> WebConfig:
    """Read, validate and check the web config file; raise ConfigError listing every problem."""
    def fail(lines):
        raise ConfigError([f"{path}: {line}" for line in lines])

    data = yamlfile.load(path, "web config file")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        fail([f"the top level must be a mapping, not {_kind(data)}"])
    p = _Parser(os.path.dirname(os.path.abspath(path)))
    p.keys("", data, _TOP_KEYS, {"rate_limit": "is not supported by this exporter"})
    tls = p.tls(data.get("tls_server_config"))
    headers = p.headers(data.get("http_server_config"))
    users = p.users(data.get("basic_auth_users"))
    if p.problems:
        fail(p.problems)
    if tls is not None:
        try:
            tls.context()
        except ConfigError as e:
            fail(e.problems)
    return WebConfig(tls=tls, users=users, headers=headers, path=path)
