r"""imaging-exporter as a Windows service, through pywin32's win32serviceutil.

Windows only (``pip install "imaging-exporter[windows]"``); nothing else
imports this module. From an elevated prompt, with the Python that has the
exporter installed (docs/windows.md):

    python -m exporter.winservice --startup auto install
    python -m exporter.winservice configure --config.file=C:\ProgramData\imaging-exporter\config.yaml
    python -m exporter.winservice start

``configure`` keeps the exporter's flags in the service's registry key
(win32serviceutil's custom options); ``stop``, ``restart``, ``remove`` and
``debug`` are win32serviceutil's own. Logs go to the Application event log,
source "imaging-exporter".
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import logging.handlers
import sys
import threading

try:
    import servicemanager
    import win32service
    import win32serviceutil
except ImportError:
    print('imaging-exporter: the Windows service needs pywin32 (Windows only): '
          'pip install "imaging-exporter[windows]"', file=sys.stderr)
    raise SystemExit(2) from None

from . import cli

SERVICE_NAME = "imaging-exporter"
_ARGS_OPTION = "ExporterArgs"

log = logging.getLogger("imaging_exporter")


class ImagingExporterService(win32serviceutil.ServiceFramework):
    _svc_name_ = SERVICE_NAME
    _svc_display_name_ = "imaging-exporter"
    _svc_description_ = ("Prometheus exporter that warns before a cloud server image or backup fails "
                         "(https://github.com/imaging-exporter/imaging-exporter).")

    def __init__(self, args):
        super().__init__(args)
        self._server = None
        self._server_ready = threading.Event()

    def SvcStop(self):  # noqa: N802 - pywin32's name
        self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
        if self._server_ready.wait(30) and self._server is not None:
            self._server.shutdown()          # serve_forever returns; cli.main flushes the state file

    def SvcDoRun(self):  # noqa: N802 - pywin32's name
        root = logging.getLogger()
        if not root.handlers:                # cli.setup_logging's basicConfig then leaves it alone
            root.addHandler(logging.handlers.NTEventLogHandler(SERVICE_NAME))
            root.setLevel(logging.INFO)
        servicemanager.LogMsg(servicemanager.EVENTLOG_INFORMATION_TYPE, servicemanager.PYS_SERVICE_STARTED,
                              (self._svc_name_, ""))
        args = json.loads(win32serviceutil.GetServiceCustomOption(SERVICE_NAME, _ARGS_OPTION, "[]"))
        errors = io.StringIO()               # a service has no console: one-line errors go to the event log

        def serving(server):
            self._server = server
            self._server_ready.set()
        try:
            with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(errors):
                code = cli.main(args, on_serving=serving)
        except SystemExit as e:              # argparse's own exit on a bad flag
            code = e.code
        finally:
            self._server_ready.set()
        if code:
            log.error("imaging-exporter exited with %s: %s", code, errors.getvalue().strip() or "no message")
            raise SystemExit(code)           # pywin32 reports the service as failed


def configure(argv) -> int:
    """Store the exporter's flags for the service; they are checked first, like --check-config does."""
    code = cli.main(list(argv) + ["--check-config"])
    if code:
        return code
    win32serviceutil.SetServiceCustomOption(SERVICE_NAME, _ARGS_OPTION, json.dumps(list(argv)))
    print(f"{SERVICE_NAME}: service flags set to {' '.join(argv) or '(none)'}; restart the service to apply")
    return 0


def main(argv=None) -> int:
    argv = sys.argv if argv is None else argv
    if len(argv) > 1 and argv[1] == "configure":
        return configure(argv[2:])
    # install, start, stop, restart, remove, debug; pythonservice.exe hosts the class
    # by its module name, exporter.winservice (never __main__: see below).
    win32serviceutil.HandleCommandLine(ImagingExporterService, argv=argv)
    return 0


if __name__ == "__main__":
    # Run as `python -m exporter.winservice`: hand over to the package's module, so
    # the service is registered as exporter.winservice.ImagingExporterService.
    from exporter.winservice import main as _main
    sys.exit(_main())
