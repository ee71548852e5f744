"""Command line: Prometheus-style flags, config checks, --once, and serving."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

from . import __version__, logs, profiles
from .config import load as load_config
from .errors import ConfigError
from .state import default_path as default_state_path
from .units import format_bytes

log = logging.getLogger("imaging_exporter")



def collector_defaults():
    """--collector.<name> flags: host, then every provider of the registry; all on by default."""
    from .sources import registry
    return {"host": True, **{name: True for name in registry.names()}}


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, not the usage block: bad input gets a clear one-line error.
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def build_parser():
    p = _Parser(
        prog="imaging-exporter",
        description="Prometheus exporter that warns before a cloud server image or backup fails.")
    p.add_argument("--web.listen-address", dest="listen_address", action="append", metavar="ADDRESS",
                   help="Address to listen on for the web interface and telemetry (default :9847); "
                        "repeat it to listen on several, as node_exporter does.")
    p.add_argument("--web.max-requests", dest="max_requests", type=int, default=64, metavar="N",
                   help="Requests answered at once; more get 503 (default 64, 0: no limit), "
                        "like node_exporter's flag.")
    p.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics", metavar="PATH",
                   help="Path under which to expose metrics (default /metrics).")
    p.add_argument("--web.config.file", dest="web_config_file", default="", metavar="FILE",
                   help="Exporter-toolkit web config file for TLS and basic auth.")
    p.add_argument("--config.file", dest="config_file", default="", metavar="FILE",
                   help="YAML config file; without one, host mode with the generic profile.")
    for name, default in collector_defaults().items():
        p.add_argument(f"--collector.{name}", dest=f"collector_{name}", default=default,
                       action=argparse.BooleanOptionalAction,
                       help=f"Enable the {name} collector (default {'on' if default else 'off'}).")
    p.add_argument("--web.disable-exporter-metrics", dest="disable_exporter_metrics", action="store_true",
                   help="Leave out the exporter's own process_* metrics (CPU, memory, open files).")
    p.add_argument("--log.level", dest="log_level", default="info",
                   choices=logs.LEVELS, help="Log level (default info).")
    p.add_argument("--log.format", dest="log_format", default="logfmt",
                   choices=logs.FORMATS, help="Log format: logfmt or json (default logfmt).")
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
    from .sources import registry
    problems = []
    for i, c in enumerate(config.clouds):
        if not collectors.get(c.provider, True):
            continue
        where = f"{config.path}: clouds[{i}] ({c.name})"
        provider = registry.get(c.provider)
        try:
            provider.source_class()         # its SDK is installed
            problems += [f"{where}: {p}" for p in provider.preflight(c)]
        except ConfigError as e:
            problems += [f"{where}: {p}" for p in e.problems]
    return problems


def _write_textfile(path, body):
    """Atomically (exporter.state.write_atomic): node_exporter sees the old file or the new one,
    never a half-written one; the temporary name does not end in .prom, which the textfile
    collector skips. World-readable (0644), as node_exporter usually runs as another user; the
    directory must exist (a typo in --output is an error, not a new directory)."""
    from .state import write_atomic
    write_atomic(path, body, mode=0o644, make_dirs=False)


def _once(exporter, output):
    """One scrape plus its timestamp, to stdout or atomically to ``output``."""
    from .collectors.exporter import TEXTFILE_TIMESTAMP
    from .collectors.spec import FamilySet
    from .render import TEXT, render
    import time
    exporter.refresh_all()
    stamp = FamilySet((TEXTFILE_TIMESTAMP,))
    stamp.add(TEXTFILE_TIMESTAMP, (), time.time())
    body = exporter.exposition.raw() + render([stamp], TEXT)
    log.debug("one scrape: %d bytes%s", len(body), f", to {output}" if output else "")
    if not output:
        sys.stdout.write(body.decode())
        return 0
    try:
        _write_textfile(output, body)
    except OSError as e:
        print(f"imaging-exporter: --output {output}: cannot write: {e.strerror}", file=sys.stderr)
        return 2
    return 0


def main(argv=None, on_serving=None):
    """The command. ``on_serving(server)``, when given, replaces the signal handlers: the
    Windows service (exporter/winservice.py) runs this off the main thread and stops the
    server itself."""
    try:
        code = _main(argv, on_serving)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`--list-profiles | head`): not an error. Point stdout
        # at /dev/null so the interpreter's own flush at exit stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _state_file_problem(path):
    """Why the state file could not be written, or "" (checked without writing)."""
    if os.path.lexists(path):
        if not os.path.isfile(path):
            return f"state file {path} is not a regular file"
        if not os.access(path, os.R_OK | os.W_OK):
            return f"state file {path} is not readable and writable by this user"
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):           # the exporter creates missing directories
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        return f"state file {path}: directory {parent} is not writable by this user"
    return ""


def _limit_warnings(config):
    """Config limits whose mountpoints regex matches none of this server's filesystems."""
    from . import limits as limits_mod
    from .sources.host import platform_source
    snap = platform_source(config.host).read()
    mounts = ", ".join(sorted({fs.mountpoint for fs in snap.filesystems})) or "none"
    return [f"{config.path}: host.limits ({l.name}): mountpoints {l.mountpoints!r} matches none of "
            f"this server's filesystems ({mounts})" for l in limits_mod.unmatched(config.host.limits, snap)]


def _main(argv=None, on_serving=None):
    argv = _fix_negated_flags(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logs.setup(args.log_level, args.log_format)
    if args.list_profiles:
        list_profiles()
        sys.stdout.flush()
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
    args.listen_address = args.listen_address or [":9847"]
    if len(set(args.listen_address)) != len(args.listen_address):
        problems.append(f"--web.listen-address: {', '.join(args.listen_address)} names an address twice")
    if args.max_requests < 0:
        problems.append(f"--web.max-requests: {args.max_requests} must be 0 (no limit) or more")
    if not args.telemetry_path.startswith("/") or args.telemetry_path == "/":
        problems.append(f"--web.telemetry-path: {args.telemetry_path!r} must start with / and not be /")
    if args.output and not args.once:
        problems.append("--output: only with --once")
    if problems:
        for line in problems:
            print(f"imaging-exporter: {line}", file=sys.stderr)
        return 2
    collectors = {name: getattr(args, f"collector_{name}") for name in collector_defaults()}
    state_path = config.state_file or default_state_path()
    if args.check_config:
        problems = _preflight(config, collectors)
        problems += [p for p in [_state_file_problem(state_path)] if p]
        if collectors["host"]:
            for line in _limit_warnings(config):
                print(f"imaging-exporter: warning: {line}", file=sys.stderr)
        if problems:
            for line in problems:
                print(f"imaging-exporter: {line}", file=sys.stderr)
            return 2
        print(f"imaging-exporter: config OK ({args.config_file or 'defaults'}"
              f"{', web config ' + args.web_config_file if args.web_config_file else ''})")
        return 0

    from .app import assemble
    try:
        # --once writes a textfile for node_exporter, which exports its own process_* (they would clash).
        exporter = assemble(config, collectors, process_metrics=not (args.disable_exporter_metrics or args.once))
    except ConfigError as e:
        for line in e.problems:
            print(f"imaging-exporter: {line}", file=sys.stderr)
        return 2

    state_existed = os.path.exists(state_path)
    if args.once:
        log.debug("config %s; profile %s; state file %s; collectors %s", args.config_file or "defaults",
                  config.host.profile, state_path, ",".join(n for n, on in collectors.items() if on))
        try:
            return _once(exporter, args.output)
        finally:
            exporter.stop()
            if not state_existed and os.path.exists(state_path):
                log.info("created state file %s (high-water marks and counted jobs survive restarts)", state_path)

    import signal               # served mode only
    from .web import make_server
    try:
        server = make_server(args.listen_address, exporter.wsgi_app(args.telemetry_path), web_config,
                             max_requests=args.max_requests)
    except ConfigError as e:
        for line in e.problems:
            print(f"imaging-exporter: {line}", file=sys.stderr)
        return 2
    exporter.start()
    shown = ", ".join(f"[{a[0]}]:{a[1]}" if ":" in str(a[0]) else f"{a[0]}:{a[1]}" for a in server.server_addresses)
    clouds = ", ".join(f"{p.name} ({p.provider}, every {p.interval:g}s)" for p in exporter.pollers) or "none"
    host_mode = f"on (profile {config.host.profile})" if collectors["host"] else "off"
    tls = "on" if web_config and web_config.tls else "off"
    auth = "on" if web_config and web_config.users else "off"
    log.info("imaging-exporter %s listening on %s, metrics at %s; host mode %s; clouds: %s; config %s; "
             "state file %s%s; TLS %s; basic auth %s", __version__, shown, args.telemetry_path, host_mode, clouds,
             args.config_file or "none (defaults)", state_path, "" if state_existed else " (new)", tls, auth)

    def stop(signum, _frame):
        log.info("received signal %s, saving state and shutting down", signal.Signals(signum).name)
        # Whatever the clouds or the disk do, the process is gone within STOP_DEADLINE
        # (systemd's stop timeout is 20 s; a hung cloud must not eat it).
        watchdog = threading.Timer(STOP_DEADLINE, _exit_now)
        watchdog.daemon = True
        watchdog.start()
        threading.Thread(target=server.shutdown, daemon=True).start()

    def reload(signum, _frame):
        # Prometheus and Alertmanager reload on SIGHUP; here the files are checked and the
        # answer logged: pollers and listeners are built once, so changes need a restart.
        # (Certificate files are re-read on their own when they change.)
        threading.Thread(target=_check_on_hup, args=(args,), daemon=True).start()
    if on_serving is not None:
        on_serving(server)              # the Windows service stops the server itself
    else:
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)
    try:
        server.serve_forever()
    finally:
        exporter.stop(deadline=STOP_DEADLINE - 1.5)
        server.server_close()
    return 0


STOP_DEADLINE = 4.5     # seconds from SIGTERM to exit


def _exit_now():
    log.error("shutdown took longer than %.1fs; exiting without waiting further", STOP_DEADLINE)
    logging.shutdown()
    os._exit(1)


def _check_on_hup(args):
    problems = []
    for what, fn, path in (("config", load_config, args.config_file),
                           ("web config", _load_web_config, args.web_config_file)):
        try:
            fn(path)
        except ConfigError as e:
            problems += e.problems
    if problems:
        log.error("received SIGHUP: the config files have problems (still running with the loaded ones): %s",
                  "; ".join(problems))
    else:
        log.info("received SIGHUP: config files checked and valid; a restart applies changes to them "
                 "(TLS certificates are reloaded automatically)")


if __name__ == "__main__":
    sys.exit(main())
