"""Command line: Prometheus-style flags, config checks, --once, and serving."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from . import __version__, profiles
from .config import load as load_config
from .errors import ConfigError
from .units import format_bytes

log = logging.getLogger("imaging_exporter")

COLLECTORS = {"host": True, "openstack": True, "linode": True}
# Libraries that log request details at debug level; tokens must never reach our logs.
_QUIET_LOGGERS = ("keystoneauth", "openstack", "urllib3", "requests", "stevedore", "linode_api4")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, not the usage block: bad input gets a clear one-line error.
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def build_parser():
    p = _Parser(
        prog="imaging-exporter",
        description="Prometheus exporter that warns before a cloud server image or backup fails.")
    p.add_argument("--web.listen-address", dest="listen_address", default=":9847", metavar="ADDRESS",
                   help="Address to listen on for the web interface and telemetry (default :9847).")
    p.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics", metavar="PATH",
                   help="Path under which to expose metrics (default /metrics).")
    p.add_argument("--web.config.file", dest="web_config_file", default="", metavar="FILE",
                   help="Exporter-toolkit web config file for TLS and basic auth.")
    p.add_argument("--config.file", dest="config_file", default="", metavar="FILE",
                   help="YAML config file; without one, host mode with the generic profile.")
    for name, default in COLLECTORS.items():
        p.add_argument(f"--collector.{name}", dest=f"collector_{name}", default=default,
                       action=argparse.BooleanOptionalAction,
                       help=f"Enable the {name} collector (default {'on' if default else 'off'}).")
    p.add_argument("--log.level", dest="log_level", default="info",
                   choices=("debug", "info", "warn", "error"), help="Log level (default info).")
    p.add_argument("--check-config", action="store_true",
                   help="Validate the config and web config files, then exit.")
    p.add_argument("--once", action="store_true",
                   help="Print one scrape to stdout and exit (for the textfile collector).")
    p.add_argument("--output", default="", metavar="FILE",
                   help="With --once: write the scrape to FILE atomically (temporary file, then rename) "
                        "instead of stdout; on an error FILE is left as it was.")
    p.add_argument("--list-profiles", action="store_true", help="Print the limit profiles and exit.")
    p.add_argument("--version", action="version", version=f"imaging-exporter {__version__}")
    return p


def _fix_negated_flags(argv):
    # Prometheus spells the negation --no-collector.host; argparse's
    # BooleanOptionalAction does too, so nothing to rewrite, but
    # "--collector.host=false" is also common in Go exporters' docs.
    out = []
    for a in argv:
        if a.startswith("--collector.") and "=" in a:
            flag, value = a.split("=", 1)
            out.append(flag if value.lower() in ("1", "true", "yes") else "--no-" + flag[2:])
        else:
            out.append(a)
    return out


def setup_logging(level):
    logging.basicConfig(
        level={"warn": logging.WARNING}.get(level, getattr(logging, level.upper())),
        format='ts=%(asctime)s level=%(levelname)s logger=%(name)s msg="%(message)s"',
        datefmt="%Y-%m-%dT%H:%M:%S%z", stream=sys.stderr)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def list_profiles(out=sys.stdout):
    for p in profiles.profiles().values():
        out.write(f"{p.name}: {p.description}\n")
        if not p.limits:
            out.write("    no size, inode or image-count limits\n")
        for limit in p.limits:
            value = format_bytes(limit.value) if limit.unit == "bytes" else f"{limit.value:,} {limit.unit}"
            out.write(f"    {limit.name} ({limit.measure}): {value}\n        source: {limit.source}\n")
        if p.note:
            out.write(f"    note: {p.note}\n")
    c = profiles.common()
    out.write(f"all profiles: a job running longer than {c.job_stuck_after / 3600:g} h is stuck; "
              f"{c.repeated_failures} failures for one server call for the provider; "
              f"a retry about {c.retry_after / 60:g} minutes after a failure may succeed\n")


def _load_web_config(path):
    if not path:
        return None
    from .web_config import load_web_config
    return load_web_config(path)


def _preflight(config, collectors):
    """What each cloud that will be polled needs on this machine (its SDK, credentials),
    checked without the network. Clouds whose collector is off are not polled, so not checked."""
    from .sources import provider_module
    problems = []
    for i, c in enumerate(config.clouds):
        if not collectors.get(c.provider, True):
            continue
        where = f"{config.path}: clouds[{i}] ({c.name})"
        try:
            problems += [f"{where}: {p}" for p in provider_module(c.provider).preflight(c)]
        except ConfigError as e:
            problems += [f"{where}: {p}" for p in e.problems]
    return problems


def _write_textfile(path, body):
    """Temporary file in the same directory, then rename: a reader sees the old or the new file.

    The temporary name does not end in .prom, which node_exporter's textfile collector skips;
    the file is world-readable (0644) like node_exporter's own examples, as node_exporter
    usually runs as another user.
    """
    import os
    import tempfile
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _once(exporter, output):
    """One scrape plus its timestamp, to stdout or atomically to ``output``."""
    from .collectors.exporter import TEXTFILE_TIMESTAMP
    from .collectors.spec import Families
    from .render import TEXT, render
    import time
    exporter.refresh_all()
    stamp = Families((TEXTFILE_TIMESTAMP,))
    stamp.add(TEXTFILE_TIMESTAMP, (), time.time())
    body = exporter.exposition.raw() + render([stamp], TEXT)
    if not output:
        sys.stdout.write(body.decode())
        return 0
    try:
        _write_textfile(output, body)
    except OSError as e:
        print(f"imaging-exporter: --output {output}: cannot write: {e.strerror}", file=sys.stderr)
        return 2
    return 0


def main(argv=None):
    argv = _fix_negated_flags(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.list_profiles:
        list_profiles()
        return 0

    problems = []
    config = web_config = None
    try:
        config = load_config(args.config_file)
    except ConfigError as e:
        problems += e.problems
    try:
        web_config = _load_web_config(args.web_config_file)
    except ConfigError as e:
        problems += e.problems
    if not args.telemetry_path.startswith("/") or args.telemetry_path == "/":
        problems.append(f"--web.telemetry-path: {args.telemetry_path!r} must start with / and not be /")
    if args.output and not args.once:
        problems.append("--output: only with --once")
    if problems:
        for line in problems:
            print(f"imaging-exporter: {line}", file=sys.stderr)
        return 2
    collectors = {name: getattr(args, f"collector_{name}") for name in COLLECTORS}
    if args.check_config:
        problems = _preflight(config, collectors)
        if problems:
            for line in problems:
                print(f"imaging-exporter: {line}", file=sys.stderr)
            return 2
        print(f"imaging-exporter: config OK ({args.config_file or 'defaults'}"
              f"{', web config ' + args.web_config_file if args.web_config_file else ''})")
        return 0

    from .app import Exporter
    from .web import make_server
    try:
        exporter = Exporter(config, collectors)
    except ConfigError as e:
        for line in e.problems:
            print(f"imaging-exporter: {line}", file=sys.stderr)
        return 2

    if args.once:
        try:
            return _once(exporter, args.output)
        finally:
            exporter.stop()

    try:
        server = make_server(args.listen_address, exporter.wsgi_app(args.telemetry_path), web_config)
    except ConfigError as e:
        for line in e.problems:
            print(f"imaging-exporter: {line}", file=sys.stderr)
        return 2
    exporter.start()
    host, port = server.server_address[:2]
    shown = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    clouds = ", ".join(f"{p.name} ({p.provider}, every {p.interval:g}s)" for p in exporter.pollers) or "none"
    log.info("imaging-exporter %s listening on %s, metrics at %s; host mode %s; clouds: %s", __version__, shown,
             args.telemetry_path, "on" if collectors["host"] else "off", clouds)

    def stop(signum, _frame):
        log.info("received signal %d, shutting down", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        # The accept loop wakes every poll_interval to check for shutdown; 2 s
        # instead of 0.5 s cuts the idle CPU by three quarters.
        server.serve_forever(poll_interval=2.0)
    finally:
        exporter.stop()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
