"""What a cloud provider declares about itself, without importing its SDK.

A provider is a package `exporter/sources/<name>/` whose `__init__.py` holds
one `PROVIDER = Provider(...)`: its config options (defaults and checks), the
preflight for --check-config, the SDK loggers to quiet, its default profile,
the pip extra that installs its SDK, and where its source class is. Its
`source.py` is imported only when a cloud of that provider is polled, so
host mode and the config check never import an SDK.
"""
from __future__ import annotations

import importlib
import re
from types import MappingProxyType
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Tuple

from ..errors import ConfigError
from ..units import parse_count, parse_duration


class Option(NamedTuple):
    """One provider key of a `clouds[]` entry."""
    default: Any
    parse: Callable[[Any], Any]   # raises ValueError whose text ends the config error line
    help: str = ""


class Provider(NamedTuple):
    name: str                                   # the config's `provider:` and the `source` label
    source: str                                 # "package.module:Class", imported when first polled
    extra: str                                  # pip install 'imaging-exporter[<extra>]'
    sdk: str                                    # what the extra installs, named in the error
    profile: str                                # default limits profile (exporter/profiles.yaml)
    options: Mapping[str, Option] = MappingProxyType({})     # NamedTuple (exporter.models): read-only default
    preflight: Callable[[Any], List[str]] = lambda cfg: []     # problems seen without the network
    quiet_loggers: Tuple[str, ...] = ()         # the SDK's loggers that print requests at debug
    # instance-id (cloud-init) -> this provider's server id, or "" when it is not one
    server_id: Optional[Callable[[str], str]] = None

    def source_class(self):
        """The source class; a missing SDK is one ConfigError naming the extra."""
        module, _, cls = self.source.partition(":")
        try:
            return getattr(importlib.import_module(module), cls)
        except ImportError as e:
            missing = getattr(e, "name", None) or str(e)
            raise ConfigError(f"provider {self.name} needs {self.sdk}, which is not installed ({missing} is "
                              f"missing): pip install 'imaging-exporter[{self.extra}]'") from None


class Options(Mapping):
    """A cloud's provider options, read-only (CloudConfig stays frozen and hashable)."""

    def __init__(self, values: Optional[Mapping[str, Any]] = None):
        self._values: Dict[str, Any] = dict(values or {})

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items())))

    def __repr__(self) -> str:
        return f"Options({self._values!r})"


# ---- option checks shared by providers ------------------------------------------

_TYPE_NAMES = {dict: "a mapping", list: "a list", str: "a string", int: "a number", float: "a number",
               bool: "true/false", type(None): "empty"}


def type_name(v) -> str:
    return _TYPE_NAMES.get(type(v), type(v).__name__)


def string(v) -> str:
    if not isinstance(v, str):
        raise ValueError(f"must be a string, not {type_name(v)}")
    return v


def boolean(v) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, not {type_name(v)}")
    return v


def count(v) -> int:
    return parse_count(v)


def positive_duration(v) -> float:
    x = parse_duration(v)
    if x <= 0:
        raise ValueError(f"{v!r} must be greater than zero")
    return x


def http_url(v, required: bool = True) -> str:
    """An http(s) URL without its trailing slash; "" allowed when not required."""
    v = string(v)
    if (v or required) and not re.match(r"^https?://", v):
        raise ValueError(f"{v!r} must start with http:// or https://")
    return v.rstrip("/")


def env_name(v) -> str:
    v = string(v)
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", v):
        raise ValueError(f"{v!r} is not an environment variable name")
    return v
