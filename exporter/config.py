"""The YAML configuration, validated up front into NamedTuples (cheap to define: exporter.models).

Every problem is reported as one line naming the key; nothing here raises
anything but ConfigError. Everything has a default, so no file is needed.
"""
from __future__ import annotations

import os
import re
from typing import List, NamedTuple, Optional, Tuple

from . import profiles as profiles_mod, yamlfile
from .errors import ConfigError
from .profiles import HOST_MEASURES, Limit, parse_limit_value
from .sources import registry
from .sources.provider import Options
from .units import parse_count, parse_duration, parse_size

# node_exporter's defaults (collector/filesystem_linux.go), plus the
# container runtimes' overlay trees.
DEFAULT_MOUNT_POINTS_EXCLUDE = r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
DEFAULT_FS_TYPES_EXCLUDE = (r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|"
                            r"hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|"
                            r"selinuxfs|squashfs|erofs|sysfs|tracefs|tmpfs|ramfs)$")
DEFAULT_STATE_FILE = ""                # "": exporter.state.default_path() decides


class HostConfig(NamedTuple):
    profile: str = "generic"
    server_id: str = ""
    mount_points_include: str = ""
    mount_points_exclude: str = DEFAULT_MOUNT_POINTS_EXCLUDE
    fs_types_include: str = ""
    fs_types_exclude: str = DEFAULT_FS_TYPES_EXCLUDE
    mount_timeout: float = 5.0
    root_path: str = "/"          # "/host" when the host's root is mounted into a container
    limits: Tuple[Limit, ...] = ()
    disabled_limits: Tuple[str, ...] = ()     # profile limits turned off with `enabled: false`


class CloudConfig(NamedTuple):
    name: str
    provider: str                  # a name of exporter.sources.registry
    refresh_interval: float = 300.0
    lookback: float = 48 * 3600.0
    request_timeout: float = 30.0
    profile: str = ""              # limits profile; default: the provider's own
    image_quota: Optional[int] = None
    image_bytes_quota: Optional[int] = None
    max_image_size: Optional[int] = None
    # the provider's own keys, declared and checked by its package (exporter/sources/<provider>/)
    options: Options = Options()     # read-only, so one shared empty default is safe


class Config(NamedTuple):
    host: HostConfig = HostConfig()
    clouds: Tuple[CloudConfig, ...] = ()
    state_file: str = DEFAULT_STATE_FILE
    path: str = ""


# ---- validation -------------------------------------------------------------

class _Problems:
    def __init__(self):
        self.lines: List[str] = []

    def add(self, key, msg):
        self.lines.append(f"{key}: {msg}")


def _typename(v):
    return {dict: "a mapping", list: "a list", str: "a string", int: "a number",
            float: "a number", bool: "true/false", type(None): "empty"}.get(type(v), type(v).__name__)


def _check_keys(p, key, mapping, allowed):
    for k in mapping:
        if k not in allowed:
            import difflib          # only for an unknown key: a good config never imports it
            close = difflib.get_close_matches(str(k).replace("-", "_"), allowed, n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            p.add(f"{key}.{k}" if key else str(k), f"unknown key{hint}; known keys: {', '.join(sorted(allowed))}")


def _get(p, key, mapping, name, kind, default, parse=None):
    """Read mapping[name], check its type, parse it; on error note it and return default."""
    if name not in mapping:
        return default
    v = mapping[name]
    full = f"{key}.{name}" if key else name
    if kind is str and not isinstance(v, str):
        p.add(full, f"must be a string, not {_typename(v)}")
        return default
    if kind is bool and not isinstance(v, bool):
        p.add(full, f"must be true or false, not {_typename(v)}")
        return default
    if parse is not None:
        try:
            return parse(v)
        except ValueError as e:
            p.add(full, str(e))
            return default
        except OverflowError:            # e.g. "1e400GB"
            p.add(full, f"{str(v)[:30]!r} is too large")
            return default
    return v


def _regex(v):
    if not isinstance(v, str):
        raise ValueError(f"must be a regular expression string, not {_typename(v)}")
    try:
        re.compile(v)
    except re.error as e:
        raise ValueError(f"bad regular expression {v!r}: {e}") from None
    return v


def _positive(parse):
    def inner(v):
        x = parse(v)
        if x <= 0:
            raise ValueError(f"{v!r} must be greater than zero")
        return x
    return inner


# Bounds on each duration, in seconds (documented in docs/setup.md): below
# them an API is polled hundreds of times a second, above them a value is
# a typo (110000d) that breaks the poller's waits or the host's timeouts.
DURATION_BOUNDS = {
    "refresh_interval": (10.0, 86400.0),            # 10 s .. 1 d
    "lookback": (3600.0, 90 * 86400.0),             # 1 h .. 90 d
    "request_timeout": (1.0, 600.0),                # 1 s .. 10 min
    "mount_timeout": (0.1, 300.0),                  # 100 ms .. 5 min
}
MAX_QUANTITY = 2 ** 63 - 1                          # counts and sizes: any real quota fits


def _fmt_seconds(x):
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if x >= n and x % n == 0:
            return f"{x / n:g}{unit}"
    return f"{x * 1000:g}ms" if x < 1 else f"{x:g}s"


def _min_refresh_interval():
    """IMAGING_EXPORTER_MIN_REFRESH_INTERVAL lowers refresh_interval's minimum, to no
    less than 1 s, for test rigs polling fake APIs on loopback; never for a real cloud."""
    raw = os.environ.get("IMAGING_EXPORTER_MIN_REFRESH_INTERVAL", "")
    try:
        return max(1.0, parse_duration(raw)) if raw else DURATION_BOUNDS["refresh_interval"][0]
    except (ValueError, OverflowError):
        return DURATION_BOUNDS["refresh_interval"][0]


def _duration(name):
    low, high = DURATION_BOUNDS[name]
    if name == "refresh_interval":
        low = _min_refresh_interval()

    def inner(v):
        x = parse_duration(v)
        if not low <= x <= high:
            raise ValueError(f"{v!r} is outside {_fmt_seconds(low)}..{_fmt_seconds(high)}")
        return x
    return inner


def _quantity(parse):
    def inner(v):
        x = _positive(parse)(v)
        if x > MAX_QUANTITY:
            raise ValueError(f"{str(v)[:30]!r} is too large")
        return x
    return inner


def _profile_name(v):
    if not isinstance(v, str) or v not in profiles_mod.profiles():
        raise ValueError(f"unknown profile {v!r}; known profiles: {', '.join(profiles_mod.profiles())}")
    return v


_HOST_KEYS = ("profile", "server_id", "mount_points_include", "mount_points_exclude", "fs_types_include",
              "fs_types_exclude", "mount_timeout", "root_path", "limits")
_LIMIT_KEYS = ("name", "measure", "value", "mountpoints", "enabled")
_CLOUD_COMMON = ("name", "provider", "refresh_interval", "lookback", "request_timeout", "profile",
                 "image_quota", "image_bytes_quota", "max_image_size")


def _parse_host(p, raw):
    key = "host"
    if not isinstance(raw, dict):
        p.add(key, f"must be a mapping, not {_typename(raw)}")
        return HostConfig()
    _check_keys(p, key, raw, _HOST_KEYS)
    d = HostConfig()
    profile = _get(p, key, raw, "profile", None, d.profile, _profile_name)
    limits, disabled = [], []
    raw_limits = raw.get("limits", [])
    if not isinstance(raw_limits, list):
        p.add("host.limits", f"must be a list, not {_typename(raw_limits)}")
        raw_limits = []
    for i, rl in enumerate(raw_limits):
        lk = f"host.limits[{i}]"
        if not isinstance(rl, dict):
            p.add(lk, f"must be a mapping with name, measure and value, not {_typename(rl)}")
            continue
        _check_keys(p, lk, rl, _LIMIT_KEYS)
        if rl.get("enabled", True) is not True:
            name = _disabled_limit(p, lk, rl, profile)
            if name:
                disabled.append(name)
            continue
        missing = [k for k in ("name", "measure", "value") if k not in rl]
        if missing:
            p.add(lk, f"missing {', '.join(missing)}")
            continue
        name = _get(p, lk, rl, "name", str, None)
        measure = rl["measure"]
        if measure not in HOST_MEASURES:
            p.add(f"{lk}.measure", f"unknown measure {measure!r}; known: {', '.join(HOST_MEASURES)}")
            continue
        if rl["value"] is None:
            p.add(f"{lk}.value", "is empty; give a number (3000000) or a size with a unit (250GB)")
            continue
        value = _get(p, lk, rl, "value", None, None, lambda v: parse_limit_value(measure, v))
        if isinstance(value, int) and value <= 0:
            p.add(f"{lk}.value", "must be greater than zero")
            value = None
        mps = _get(p, lk, rl, "mountpoints", None, None, _regex)
        if name and value is not None:
            limits.append(Limit(name=name, measure=measure, value=value, source="config", mountpoints=mps))
    return HostConfig(
        profile=profile,
        server_id=str(_get(p, key, raw, "server_id", None, d.server_id) or ""),
        mount_points_include=_get(p, key, raw, "mount_points_include", None, d.mount_points_include, _regex),
        mount_points_exclude=_get(p, key, raw, "mount_points_exclude", None, d.mount_points_exclude, _regex),
        fs_types_include=_get(p, key, raw, "fs_types_include", None, d.fs_types_include, _regex),
        fs_types_exclude=_get(p, key, raw, "fs_types_exclude", None, d.fs_types_exclude, _regex),
        mount_timeout=_get(p, key, raw, "mount_timeout", None, d.mount_timeout, _duration("mount_timeout")),
        root_path=_get(p, key, raw, "root_path", str, d.root_path),
        limits=tuple(limits),
        disabled_limits=tuple(disabled),
    )


def _disabled_limit(p, lk, rl, profile):
    """`{name: <a limit of the profile>, enabled: false}`: that limit is not in force on this host."""
    if rl["enabled"] is not False:
        p.add(f"{lk}.enabled", f"must be true or false, not {_typename(rl['enabled'])}")
        return None
    extra = sorted(set(rl) - {"name", "enabled"})
    if extra:
        p.add(lk, f"a limit turned off takes only name and enabled, not {', '.join(extra)}")
        return None
    name = rl.get("name")
    known = [l.name for l in profiles_mod.get(profile).limits] if profile in profiles_mod.profiles() else []
    if not isinstance(name, str) or name not in known:
        p.add(f"{lk}.name", f"{name!r} is not a limit of profile {profile!r}; its limits: "
                            f"{', '.join(dict.fromkeys(known)) or 'none'}")
        return None
    return name


def _parse_cloud(p, i, raw, seen):
    key = f"clouds[{i}]"
    if not isinstance(raw, dict):
        p.add(key, f"must be a mapping, not {_typename(raw)}")
        return None
    provider = raw.get("provider")
    try:
        module = registry.get(provider)
    except ConfigError as e:
        p.add(f"{key}.provider", e.problems[0])
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_.:-]+$", name or ""):
        p.add(f"{key}.name", "must be a short name of letters, digits, '_', '.', ':' or '-'")
        return None
    if name in seen:
        p.add(f"{key}.name", f"{name!r} is used by another cloud; names must be unique")
    seen.add(name)
    key = f"clouds[{i}] ({name})"
    _check_keys(p, key, raw, _CLOUD_COMMON + tuple(module.options))
    d = CloudConfig(name=name, provider=provider)
    cfg = CloudConfig(
        name=name, provider=provider,
        refresh_interval=_get(p, key, raw, "refresh_interval", None, d.refresh_interval, _duration("refresh_interval")),
        lookback=_get(p, key, raw, "lookback", None, d.lookback, _duration("lookback")),
        request_timeout=_get(p, key, raw, "request_timeout", None, d.request_timeout, _duration("request_timeout")),
        profile=_get(p, key, raw, "profile", None, module.profile, _profile_name),
        image_quota=_get(p, key, raw, "image_quota", None, None, _quantity(parse_count)),
        image_bytes_quota=_get(p, key, raw, "image_bytes_quota", None, None, _quantity(parse_size)),
        max_image_size=_get(p, key, raw, "max_image_size", None, None, _quantity(parse_size)),
        options=Options({name: _get(p, key, raw, name, None, opt.default, opt.parse)
                         for name, opt in module.options.items()}),
    )
    return cfg


def cloud_config(provider: str, name: str, **values) -> CloudConfig:
    """A CloudConfig from Python values, unchecked (tests, benchmarks): the common keys as
    given, every other key one of the provider's options; those not given take their defaults."""
    options = registry.get(provider).options
    unknown = set(values) - set(_CLOUD_COMMON) - set(options)
    if unknown:
        raise TypeError(f"not keys of a {provider} cloud: {', '.join(sorted(unknown))}")
    common = {k: v for k, v in values.items() if k in _CLOUD_COMMON}
    common.setdefault("profile", registry.get(provider).profile)
    return CloudConfig(name=name, provider=provider, **common,
                       options=Options({k: values.get(k, o.default) for k, o in options.items()}))


_TOP_KEYS = ("host", "clouds", "state_file")


def parse(data, path="") -> Config:
    """Validate a loaded YAML document; raise ConfigError listing every problem."""
    p = _Problems()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: the top level must be a mapping, not {_typename(data)}")
    _check_keys(p, "", data, _TOP_KEYS)
    host = _parse_host(p, data["host"]) if "host" in data else HostConfig()
    clouds = []
    raw_clouds = data.get("clouds", [])
    if raw_clouds is None:
        raw_clouds = []
    if not isinstance(raw_clouds, list):
        p.add("clouds", f"must be a list, not {_typename(raw_clouds)}")
        raw_clouds = []
    seen = set()
    for i, rc in enumerate(raw_clouds):
        c = _parse_cloud(p, i, rc, seen)
        if c is not None:
            clouds.append(c)
    state_file = _get(p, "", data, "state_file", str, DEFAULT_STATE_FILE)
    if p.lines:
        prefix = f"{path}: " if path else ""
        raise ConfigError([prefix + line for line in p.lines])
    return Config(host=host, clouds=tuple(clouds), state_file=state_file, path=path)


def load(path) -> Config:
    """Read and validate the file at ``path``; None gives the defaults."""
    if not path:
        return Config()
    return parse(yamlfile.load(path, "config file"), path)
