"""Reading an operator's YAML file without trusting it.

Used for the config file and the web config file. Everything that could
hang, exhaust memory or end in a traceback is one ConfigError line instead:
- only a regular file (a FIFO, /dev/zero or a directory is refused before
  any read) of at most MAX_BYTES;
- UTF-8 only (UTF-16 and UTF-32 files, NUL bytes and undecodable bytes are
  refused with what was found);
- no aliases (*name): "billion laughs" documents expand exponentially, and
  a config has no need for them;
- no duplicate keys (the second would silently win, as in yaml.UnmarshalStrict);
- mapping keys are scalars; nesting at most MAX_DEPTH deep;
- integers within 64 bits, floats finite.
"""
from __future__ import annotations

import functools
import math
import os
import stat
from typing import Any

from .errors import ConfigError

MAX_BYTES = 1024 * 1024          # a real config is a few KiB
MAX_DEPTH = 32
MAX_INT = 2 ** 63


def read_regular_file(path: str, limit: int, allow_devnull: bool = False) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Opened non-blocking and checked with fstat before any read, so a FIFO,
    a device (/dev/zero) or a directory is an error at once, never a hang
    or an endless read. FileNotFoundError and other OSErrors pass through;
    a file that is not regular or too big is a ValueError saying so.
    allow_devnull: /dev/null reads as empty (``--config.file=/dev/null``)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if allow_devnull and stat.S_ISCHR(st.st_mode) and st.st_rdev == os.stat(os.devnull).st_rdev:
            return b""
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("is not a regular file")
        if st.st_size > limit:
            raise ValueError(f"is {st.st_size:,} bytes, more than the {limit:,} allowed")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise ValueError(f"is more than the {limit:,} bytes allowed")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=None)
def strict_loader():
    """(the loader class, its error class), built when a YAML file is first read: PyYAML's
    import is ~10 ms, and a `--once` without a config file reads none (the state file
    needs only read_regular_file)."""
    import yaml

    class _Error(yaml.MarkedYAMLError):
        pass

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader without aliases or duplicate keys, with bounded depth and numbers."""

        def __init__(self, stream):
            super().__init__(stream)
            self._depth = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise _Error(None, None, f"aliases (*{event.anchor}) are not allowed", event.start_mark)
            self._depth += 1
            try:
                if self._depth > MAX_DEPTH:
                    raise _Error(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                 self.peek_event().start_mark)
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                self.flatten_mapping(node)
            seen = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _Error(None, None, "a mapping key must be a plain value, not a list or mapping",
                                 key_node.start_mark)
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise _Error(None, None, f"duplicate key {str(key)[:80]!r}", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

        def construct_yaml_int(self, node):
            text = self.construct_scalar(node)
            if len(text.replace("_", "").lstrip("+-")) > 25:        # before Python parses 400 digits
                raise _Error(None, None, f"the number {text[:30]}... is too large", node.start_mark)
            value = super().construct_yaml_int(node)
            if not -MAX_INT < value < MAX_INT:
                raise _Error(None, None, f"the number {text[:30]} is too large", node.start_mark)
            return value

        def construct_yaml_float(self, node):
            value = super().construct_yaml_float(node)
            if not math.isfinite(value):
                raise _Error(None, None, f"{self.construct_scalar(node)[:30]!r} is not a finite number",
                             node.start_mark)
            return value

    StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)
    StrictLoader.add_constructor("tag:yaml.org,2002:float", StrictLoader.construct_yaml_float)
    StrictLoader.add_constructor("tag:yaml.org,2002:map", StrictLoader.construct_yaml_map)
    return StrictLoader, _Error


_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
         (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


def decode_utf8(raw: bytes) -> str:
    """The text of a UTF-8 file; ValueError naming what else it is."""
    for bom, name in _BOMS:
        if raw.startswith(bom):
            raise ValueError(f"is {name}; save it as UTF-8")
    if b"\x00" in raw:
        raise ValueError("holds NUL bytes (UTF-16 or a binary file?); save it as UTF-8 text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"is not UTF-8 (byte {e.start} is 0x{raw[e.start]:02x}); save it as UTF-8") from None
    return text[1:] if text.startswith("\ufeff") else text


def load(path: str, what: str = "config file") -> Any:
    """The YAML document in ``path``; ConfigError (one line) for anything wrong."""
    try:
        text = decode_utf8(read_regular_file(path, MAX_BYTES, allow_devnull=True))
    except ValueError as e:
        raise ConfigError(f"{path}: cannot read {what}: it {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read {what}: {e.strerror or e}") from None
    if all(not line.strip(" ") or line.lstrip(" ").startswith("#") for line in text.splitlines()):
        return None             # empty or comments only (/dev/null): what YAML reads there, without PyYAML
    import yaml
    loader, _ = strict_loader()
    try:
        return yaml.load(text, Loader=loader)   # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except RecursionError:                             # belt and braces; MAX_DEPTH stops it first
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
