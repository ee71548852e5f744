"""Host mode on Windows, through the reader's psutil boundary.

psutil's Windows calls cannot run on Linux, so the reader is given what they
return on a Windows server, in the shapes psutil documents and builds there
(psutil/_pswindows.py, psutil/arch/windows/disk.c): ``disk_partitions``
gives sdiskpart(device, mountpoint, fstype, opts) with opts "rw,fixed",
"ro,cdrom", "rw,removable", or the bare drive type when a drive has no
media; ``disk_usage`` gives sdiskusage(total, used, free, percent) from
GetDiskFreeSpaceExW or raises OSError; ``win_service_get`` gives a
WindowsService (``as_dict()`` below) or raises NoSuchProcess; processes
carry Windows' ".exe" names. Everything else is real: the exporter, its
state file in tmp_path, the collectors, the exposition. These tests run on
Linux and on the Windows CI job alike: no path here is a Linux one.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections import namedtuple

import psutil
import pytest

from exporter import limits, profiles
from exporter.app import assemble
from exporter.config import Config, HostConfig
from exporter.sources.host import platform_source
from exporter.sources.host_windows import WindowsHostSource
from exporter.state import default_path
from conftest import ROOT, parse_metrics, samples

GB = 10**9
sdiskpart = namedtuple("sdiskpart", ["device", "mountpoint", "fstype", "opts"])
sdiskusage = namedtuple("sdiskusage", ["total", "used", "free", "percent"])

DRIVE_C = sdiskpart("C:\\", "C:\\", "NTFS", "rw,fixed")      # the system drive unless %SystemDrive% says otherwise
DATA = sdiskpart("E:\\", "E:\\", "NTFS", "rw,fixed")
DVD_EMPTY = sdiskpart("D:\\", "D:\\", "", "cdrom")             # no disc: no volume information
DVD = sdiskpart("F:\\", "F:\\", "CDFS", "ro,cdrom")
USB = sdiskpart("G:\\", "G:\\", "FAT32", "rw,removable")

# WindowsService.as_dict() of the AD DS service on a Windows Server 2022 domain controller.
NTDS_RUNNING = {
    "name": "NTDS", "display_name": "Active Directory Domain Services",
    "binpath": "C:\\Windows\\System32\\lsass.exe", "username": "LocalSystem", "start_type": "automatic",
    "pid": 688, "status": "running",
    "description": "AD DS Domain Controller service. If this service is stopped, users will be unable to"
                   " log on to the network.",
}


class RecordedService:
    """A WindowsService as psutil returns it: as_dict() and the getters read one recorded dict."""

    def __init__(self, recorded):
        self.recorded = recorded

    def as_dict(self):
        return dict(self.recorded)

    def name(self):
        return self.recorded["name"]

    def status(self):
        return self.recorded["status"]


class RecordedProcess:
    def __init__(self, pid, name, ppid):
        self.pid, self.info = pid, {"name": name, "ppid": ppid}


class WindowsPsutil:
    """psutil's Windows API as the reader calls it, answering with recorded outputs."""

    def __init__(self, partitions=(DRIVE_C,), usage=None, service=None, processes=()):
        self.partitions = list(partitions)
        self.usage = dict(usage or {})          # mountpoint -> used bytes, or an exception to raise
        self.sizes = {}
        self.service = service                  # recorded as_dict(), an exception, or None (no such service)
        self.processes = list(processes)
        self.usage_calls = []

    def disk_partitions(self, all=False):       # noqa: A002 - psutil's own parameter name
        assert all is False, "the reader asks for physical drives only"
        return list(self.partitions)

    def disk_usage(self, path):
        self.usage_calls.append(path)
        used = self.usage[path]
        if callable(used):
            used = used()
        if isinstance(used, BaseException):
            raise used
        total = self.sizes.get(path, 500 * GB)
        return sdiskusage(total, used, total - used, round(100 * used / total, 1))

    def win_service_get(self, name):
        assert name == "NTDS"
        if self.service is None:
            raise psutil.NoSuchProcess(pid=None, name=name, msg=f"service {name!r} does not exist")
        if isinstance(self.service, BaseException):
            raise self.service
        return RecordedService(self.service)

    def process_iter(self, attrs=None):
        assert attrs == ["name", "ppid"]
        return iter(self.processes)


def exporter(tmp_path, api, profile="rackspace-firstgen-windows", **host):
    cfg = HostConfig(profile=profile, server_id="srv-win-1", **host)
    source = WindowsHostSource(cfg, api=api, environ={"SystemDrive": "C:"})
    return assemble(Config(host=cfg, state_file=str(tmp_path / "state.json")), {"host": True}, host_source=source)


def scrape(exp):
    return parse_metrics(exp.exposition.raw().decode())


def one(metrics, name, **labels):
    found = samples(metrics, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return next(iter(found.values()))


def test_c_volume_growing_and_shrinking_keeps_its_high_water_mark_across_restarts(tmp_path):
    api = WindowsPsutil(usage={"C:\\": 100 * GB})
    exp = exporter(tmp_path, api)
    m = scrape(exp)
    assert one(m, "imaging_filesystem_used_bytes", mountpoint="C:\\", role="system", fstype="NTFS") == 100 * GB
    assert one(m, "imaging_filesystem_used_high_water_bytes", device="C:\\", mountpoint="C:\\") == 100 * GB
    api.usage["C:\\"] = 240 * GB                      # grows
    m = scrape(exp)
    assert one(m, "imaging_filesystem_used_high_water_bytes", mountpoint="C:\\") == 240 * GB
    assert one(m, "imaging_headroom_bytes", limit="disk_usage", mountpoint="/") == 10 * GB
    exp.stop()                                        # the service stops; the mark is on disk

    api.usage["C:\\"] = 120 * GB                      # files deleted while it was down
    exp = exporter(tmp_path, api)
    m = scrape(exp)
    assert one(m, "imaging_filesystem_used_bytes", mountpoint="C:\\") == 120 * GB
    assert one(m, "imaging_filesystem_used_high_water_bytes", mountpoint="C:\\") == 240 * GB
    # Source 000: the virtual disk "cannot shrink once it has expanded": headroom stays 10 GB.
    assert one(m, "imaging_headroom_bytes", limit="disk_usage", mountpoint="/") == 10 * GB
    api.usage["C:\\"] = 260 * GB
    assert one(scrape(exp), "imaging_headroom_bytes", limit="disk_usage", mountpoint="/") == -10 * GB
    api.usage["C:\\"] = 50 * GB
    assert one(scrape(exp), "imaging_headroom_bytes", limit="disk_usage", mountpoint="/") == -10 * GB
    exp.stop()
    assert high_water_marks(tmp_path) == {"C:\\ C:\\": 260 * GB}


def high_water_marks(tmp_path):
    """What the exporter's State wrote to the state file."""
    return json.loads((tmp_path / "state.json").read_text(encoding="utf-8"))["high_water"]


def test_ntfs_has_no_inode_series_and_inode_limits_are_not_applicable(tmp_path, caplog):
    caplog.set_level("INFO")
    api = WindowsPsutil(partitions=(DRIVE_C, DATA), usage={"C:\\": 30 * GB, "E:\\": 70 * GB})
    exp = exporter(tmp_path, api, profile="rackspace-firstgen-linux")    # a profile with an inode limit
    m = scrape(exp)
    assert not samples(m, "imaging_filesystem_inodes") and not samples(m, "imaging_filesystem_inodes_used")
    assert not samples(m, "imaging_limit_inodes") and not samples(m, "imaging_headroom_inodes")
    assert one(m, "imaging_headroom_bytes", limit="volume_size", mountpoint="/") == 220 * GB
    assert one(m, "imaging_uncovered_bytes", mountpoint="E:\\", reason="data_filesystem") == 70 * GB
    assert "limit inode_usage of profile rackspace-firstgen-linux: not applicable: NTFS has no inode counts" \
        in caplog.text
    snap = exp.exposition.collector.host.source.read()
    assert limits.not_applicable(profiles.get("rackspace-firstgen-linux").host_limits(), snap) == \
        {"inode_usage": "not applicable: NTFS has no inode counts"}
    exp.stop()


@pytest.mark.parametrize("service, expected", [
    pytest.param(NTDS_RUNNING, 1, id="domain-controller"),
    pytest.param(None, 0, id="member-server"),                                  # NoSuchProcess
    pytest.param(dict(NTDS_RUNNING, status="stopped", pid=None), 0, id="ntds-stopped"),
])
def test_domain_controller_and_not(tmp_path, service, expected):
    exp = exporter(tmp_path, WindowsPsutil(usage={"C:\\": GB}, service=service))
    assert one(scrape(exp), "imaging_host_domain_controller") == expected
    exp.stop()


def test_a_service_query_windows_refuses_leaves_the_metric_out(tmp_path, caplog):
    denied = psutil.AccessDenied(pid=None, name="NTDS", msg="service 'NTDS' is not querable (not enough privileges)")
    exp = exporter(tmp_path, WindowsPsutil(usage={"C:\\": GB}, service=denied))
    m = scrape(exp)
    assert not samples(m, "imaging_host_domain_controller"), "unknown is not 'no'"
    assert one(m, "imaging_filesystem_used_bytes", mountpoint="C:\\") == GB
    assert "cannot query the NTDS service" in caplog.text
    exp.stop()


def test_sql_server_and_the_other_engines_are_counted(tmp_path):
    procs = [RecordedProcess(0, "System Idle Process", 0), RecordedProcess(4, "System", 0),
             RecordedProcess(640, "services.exe", 520),
             RecordedProcess(2212, "sqlservr.exe", 640),
             RecordedProcess(3100, "postgres.exe", 640),          # the server ...
             RecordedProcess(3150, "postgres.exe", 3100),         # ... and two of its backends
             RecordedProcess(3151, "postgres.exe", 3100),
             RecordedProcess(3300, "mysqld.exe", 640), RecordedProcess(3400, "mongod.exe", 640),
             RecordedProcess(5000, "explorer.exe", 4990)]
    exp = exporter(tmp_path, WindowsPsutil(usage={"C:\\": GB}, processes=procs))
    m = scrape(exp)
    counts = {dict(k)["engine"]: v for k, v in samples(m, "imaging_database_processes").items()}
    assert counts["mssql"] == 1 and counts["postgresql"] == 1 and counts["mysql"] == 1 and counts["mongodb"] == 1
    assert counts["redis"] == 0
    exp.stop()


def test_cd_rom_and_removable_drives_are_not_read(tmp_path):
    # Reading an empty DVD drive raises "device not ready": it must never be asked.
    api = WindowsPsutil(partitions=(DRIVE_C, DVD_EMPTY, DVD, USB),
                        usage={"C:\\": 40 * GB, "D:\\": OSError(22, "The device is not ready", "D:\\"),
                               "F:\\": 4 * GB, "G:\\": 8 * GB})
    exp = exporter(tmp_path, api)
    m = scrape(exp)
    assert {dict(k)["mountpoint"] for k in samples(m, "imaging_filesystem_size_bytes")} == {"C:\\"}
    assert not samples(m, "imaging_filesystem_device_error") and not samples(m, "imaging_uncovered_bytes")
    assert api.usage_calls == ["C:\\"]
    exp.stop()


def test_a_volume_that_errors_is_a_device_error_not_a_crash(tmp_path):
    release = threading.Event()
    api = WindowsPsutil(partitions=(DRIVE_C, DATA, sdiskpart("H:\\", "H:\\", "NTFS", "rw,fixed")),
                        usage={"C:\\": 40 * GB,
                               "E:\\": PermissionError(13, "Access is denied", "E:\\"),
                               "H:\\": lambda: release.wait(10) and GB})     # a volume whose query hangs
    exp = exporter(tmp_path, api, mount_timeout=0.3)
    try:
        m = scrape(exp)
    finally:
        release.set()
    errors = {(dict(k)["mountpoint"], dict(k)["error"]): v for k, v in samples(m, "imaging_filesystem_device_error").items()}
    assert errors == {("E:\\", "eacces"): 1, ("H:\\", "timeout"): 1}
    assert one(m, "imaging_filesystem_used_bytes", mountpoint="C:\\") == 40 * GB
    assert one(m, "imaging_scrape_collector_success", collector="host") == 1
    assert one(m, "imaging_source_up", source="host") == 1
    exp.stop()


def test_the_system_drive_comes_from_the_environment(tmp_path):
    d = sdiskpart("D:\\", "D:\\", "NTFS", "rw,fixed")
    src = WindowsHostSource(HostConfig(), api=WindowsPsutil(partitions=(DRIVE_C, d), usage={"C:\\": GB, "D:\\": 2 * GB}),
                            environ={"SystemDrive": "d:"})
    roles = {fs.mountpoint: fs.role for fs in src.read().filesystems}
    assert roles == {"C:\\": "data", "D:\\": "system"}


def test_the_windows_reader_is_chosen_on_windows_and_the_state_file_is_under_programdata(monkeypatch):
    assert isinstance(platform_source(HostConfig(), platform="win32"), WindowsHostSource)
    monkeypatch.setenv("ProgramData", "C:\\ProgramData")
    assert default_path(platform="win32") == "C:\\ProgramData\\imaging-exporter\\state.json"


def test_linux_snapshots_have_no_domain_controller_series():
    from exporter.collectors.host import host_families
    from exporter.models import Filesystem, HostSnapshot
    snap = HostSnapshot(filesystems=(Filesystem("/dev/vda1", "/", "ext4", "system", 10, 5, 5, 100, 50),))
    names = {f.name for f in host_families(snap, (), "generic", "")}
    assert "imaging_host_domain_controller" not in names and "imaging_filesystem_inodes" in names


@pytest.mark.skipif(importlib.util.find_spec("win32serviceutil") is not None,
                    reason="pywin32 is installed here: the Windows CI job runs the service itself")
def test_the_service_wrapper_without_pywin32_says_what_to_install():
    r = subprocess.run([sys.executable, "-m", "exporter.winservice", "install"], cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == ('imaging-exporter: the Windows service needs pywin32 (Windows only): '
                                'pip install "imaging-exporter[windows]"')
