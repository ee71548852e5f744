"""Host mode: hung mounts, high-water marks across restarts, the state file."""
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time

from exporter.collectors.host import host_families
from exporter.config import HostConfig
from exporter.sources.host import SLOW_INLINE_SECONDS, HostSource, MountTable, read_mounts
from exporter.state import State
from conftest import ROOT, samples
from host_roots import hanging_stat, nfs_root

TIMEOUT = 0.3


def test_hung_stat_leaves_scrape_fast_and_is_not_waited_on_again(tmp_path):
    release = threading.Event()
    root, share = nfs_root(tmp_path)
    src = HostSource(HostConfig(mount_timeout=TIMEOUT, root_path=root), stat_fn=hanging_stat(share, release))
    try:
        t = time.monotonic()
        first = src.read()
        first_took = time.monotonic() - t
        assert first_took < TIMEOUT + 0.5
        assert [(e.mountpoint, e.error) for e in first.errors] == [("/srv/share", "timeout")]
        assert [f.mountpoint for f in first.filesystems] == ["/"], "the other mounts are still read"

        t = time.monotonic()
        second = src.read()
        assert time.monotonic() - t < TIMEOUT / 2, "a stuck mount must not be waited on again"
        assert [(e.mountpoint, e.error) for e in second.errors] == [("/srv/share", "stuck")]
    finally:
        release.set()
    time.sleep(0.1)
    third = src.read()
    assert "/srv/share" in [f.mountpoint for f in third.filesystems], "watched again once its stat returns"
    assert not third.errors


def test_hung_mount_shows_as_device_error_metric(tmp_path):
    release = threading.Event()
    root, share = nfs_root(tmp_path)
    src = HostSource(HostConfig(mount_timeout=TIMEOUT, root_path=root), stat_fn=hanging_stat(share, release))
    try:
        fams = {f.name: f for f in host_families(src.read(), (), "generic", "")}
    finally:
        release.set()
    errs = [(s.labels["mountpoint"], s.labels["error"], s.value) for s in fams["imaging_filesystem_device_error"].samples]
    assert ("/srv/share", "timeout", 1) in errs
    sizes = fams.get("imaging_filesystem_size_bytes")
    assert "/srv/share" not in [s.labels["mountpoint"] for s in (sizes.samples if sizes else [])]


def test_local_block_filesystems_are_stat_ed_inline_until_one_is_slow(tmp_path):
    root, share = nfs_root(tmp_path)
    threads, slow_once, release = {}, [0.2], threading.Event()

    def stat(path):
        threads[path] = threading.current_thread() is threading.main_thread()
        if path != share:
            if slow_once:                        # the local disk is slow once (a stalled device) ...
                time.sleep(slow_once.pop())
            elif release.is_set() is False and "hang" in threads:
                release.wait(30)                 # ... and later hangs: by then it is guarded
        return os.statvfs(path)
    src = HostSource(HostConfig(mount_timeout=TIMEOUT, root_path=root), stat_fn=stat)
    first = src.read()
    assert threads == {root + "/": True, share: False}, "ext4 on /dev/vda1 inline, NFS on a thread"
    assert {f.mountpoint for f in first.filesystems} == {"/", "/srv/share"}
    threads.clear()
    threads["hang"] = True
    try:
        t = time.monotonic()
        second = src.read()
        assert time.monotonic() - t < TIMEOUT + 0.5, "once slow, / is read under the deadline"
        assert [(e.mountpoint, e.error) for e in second.errors] == [("/", "timeout")]
        assert threads[root + "/"] is False
    finally:
        release.set()


class _Table:
    """A mount table that says when it changed, as MountTable does for the kernel's."""

    def __init__(self, mounts):
        self.mounts, self.dirty = mounts, True

    def read(self):
        self.dirty = False
        return self.mounts

    def changed(self):
        return self.dirty


def test_host_read_is_quick_only_with_local_mounts_read_inline_and_an_unchanged_table(tmp_path):
    root, share = nfs_root(tmp_path)
    src = HostSource(HostConfig(mount_timeout=TIMEOUT, root_path=root), stat_fn=lambda p: os.statvfs(p))
    src.mount_table = table = _Table([("/dev/vda1", "/", "ext4")])
    assert not src.quick(), "nothing known before the first read"
    src.read()
    assert src.quick(), "ext4 on a block device, stat'ed inline"
    table.mounts, table.dirty = table.mounts + [("filer:/export", "/srv/share", "nfs4")], True
    assert not src.quick(), "the table changed: the new mount may need the deadline"
    src.read()
    assert not src.quick(), "the NFS share is stat'ed under the deadline"
    table.mounts, table.dirty = table.mounts[:1], True
    src.read()
    assert src.quick()

    slow_once = [True]

    def slow_stat(path):
        if slow_once and slow_once.pop():
            time.sleep(2 * SLOW_INLINE_SECONDS)
        return os.statvfs(path)
    slow = HostSource(HostConfig(mount_timeout=TIMEOUT, root_path=root), stat_fn=slow_stat)
    slow.mount_table = _Table([("/dev/vda1", "/", "ext4")])
    slow.read()
    slow.read()
    assert not slow.quick(), "a local mount once slow is stat'ed under the deadline from then on: not on the loop"


def test_many_hung_mounts_do_not_starve_the_others(tmp_path):
    release = threading.Event()
    root = tmp_path / "host"
    (root / "proc" / "1").mkdir(parents=True)
    mounts = [f"/hung{i}" for i in range(12)] + ["/ok"]
    for m in mounts:
        (root / m.lstrip("/")).mkdir()
    # All network mounts: every one is stat'ed on a thread under the deadline.
    (root / "proc" / "1" / "mounts").write_text("".join(f"filer:/export{m} {m} nfs4 rw 0 0\n" for m in mounts))
    hung = {str(root) + m for m in mounts[:-1]}

    def stat(path):
        if path in hung:
            release.wait(30)
            raise FileNotFoundError(path)
        return os.statvfs("/")
    src = HostSource(HostConfig(mount_timeout=TIMEOUT, root_path=str(root)), stat_fn=stat)
    try:
        for _ in range(3):
            snap = src.read()
            assert [f.mountpoint for f in snap.filesystems] == ["/ok"]
            assert {e.mountpoint for e in snap.errors} == set(mounts[:-1])
            assert {e.error for e in snap.errors} <= {"timeout", "stuck"}
    finally:
        release.set()
        # Every stuck statfs returns and logs so inside this test, not into the next one's capture.
        deadline = time.monotonic() + 10
        while {e.error for e in src.read().errors} & {"timeout", "stuck"} and time.monotonic() < deadline:
            time.sleep(0.05)


def test_stat_error_is_reported_by_errno_name():
    def stat(path):
        raise PermissionError(13, "Permission denied")
    snap = HostSource(HostConfig(), stat_fn=stat).read()
    assert snap.filesystems == () and {e.error for e in snap.errors} == {"eacces"}


def test_mount_table_unescapes_spaces(tmp_path):
    proc = tmp_path / "proc" / "1"
    proc.mkdir(parents=True)
    (proc / "mounts").write_text("/dev/vdb /mnt/my\\040data ext4 rw 0 0\n")
    assert read_mounts(str(tmp_path)) == [("/dev/vdb", "/mnt/my data", "ext4")]


MOUNT_WATCH = """
import os, subprocess, sys, tempfile
from exporter.sources.host import MountTable
table = MountTable(paths=["/proc/self/mounts"])
first = table.read()
assert table.read() is first, "unchanged table: not read again"
assert not table.changed()
where = tempfile.mkdtemp()
subprocess.run(["mount", "-t", "tmpfs", "imaging-test", where], check=True)
assert table.changed() and table.changed(), "a change is reported until the table is read"
mounted = table.read()
assert not table.changed()
assert (("imaging-test", where, "tmpfs") in mounted) and table.read() is mounted, mounted
subprocess.run(["umount", where], check=True)
assert where not in [m for _, m, _ in table.read()]
print("ok")
"""


def test_mount_table_is_reread_when_the_kernel_reports_a_change():
    # A private mount namespace (a user namespace too when not root), so the test mounts nothing on the host.
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-Urm"]
    out = subprocess.run(unshare + [sys.executable, "-c", MOUNT_WATCH], capture_output=True, text=True, timeout=60,
                         cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_mount_table_in_a_plain_file_is_read_every_time(tmp_path):
    proc = tmp_path / "proc" / "1"
    proc.mkdir(parents=True)
    (proc / "mounts").write_text("/dev/vda1 / ext4 rw 0 0\n")
    table = MountTable(str(tmp_path))
    assert table.read() == [("/dev/vda1", "/", "ext4")]
    (proc / "mounts").write_text("/dev/vda1 / ext4 rw 0 0\n/dev/vdb /data xfs rw 0 0\n")
    assert table.read() == [("/dev/vda1", "/", "ext4"), ("/dev/vdb", "/data", "xfs")]


def test_high_water_never_decreases_and_survives_restart(tmp_path, exporter_process):
    state_file = tmp_path / "state.json"
    exp = exporter_process({"state_file": str(state_file)})
    m = exp.scrape()
    used = samples(m, "imaging_filesystem_used_bytes", mountpoint="/")
    hw = samples(m, "imaging_filesystem_used_high_water_bytes", mountpoint="/")
    device = dict(next(iter(used))) ["device"]
    assert list(hw.values())[0] >= list(used.values())[0]
    exp.stop()
    data = json.loads(state_file.read_text())
    assert data["high_water"][f"{device} /"] >= list(used.values())[0]

    # A higher mark from an earlier life of the server: kept, never lowered by today's smaller use.
    data["high_water"][f"{device} /"] = 10**15
    state_file.write_text(json.dumps(data))
    exp = exporter_process({"state_file": str(state_file)})
    for _ in range(2):
        hw = samples(exp.scrape(), "imaging_filesystem_used_high_water_bytes", mountpoint="/")
        assert list(hw.values()) == [10**15]
    exp.stop()
    assert json.loads(state_file.read_text())["high_water"][f"{device} /"] == 10**15


def test_corrupt_state_file_is_reported_and_replaced(tmp_path, exporter_process):
    state_file = tmp_path / "state.json"
    for garbage in (b'{"version": 1, "high_wat', b"\x00\xff\xfe", b"[]", b'{"version": 1, "high_water": {"a": "x"}}'):
        state_file.write_bytes(garbage)
        exp = exporter_process({"state_file": str(state_file)})
        assert samples(exp.scrape(), "imaging_filesystem_used_high_water_bytes", mountpoint="/")
        exp.stop()
        assert "is corrupt" in exp.log() and "Traceback" not in exp.log()
        assert json.loads(state_file.read_text())["version"] == 1
    assert len(list(tmp_path.glob("state.json.corrupt-*"))) >= 1


def test_unwritable_state_file_is_not_fatal(tmp_path, exporter_process):
    blocker = tmp_path / "file"
    blocker.write_text("")
    exp = exporter_process({"state_file": str(blocker / "state.json")})   # a path under a regular file
    assert samples(exp.scrape(), "imaging_filesystem_used_bytes", mountpoint="/")
    assert "cannot write state file" in exp.log()


WRITER = """
import sys
from exporter.state import State
s = State(sys.argv[1])
i = int(sys.argv[2])
print("ready", flush=True)
while True:
    i += 1
    s.high_water("/dev/x", "/", i)
    s.flush()
"""


def test_state_file_survives_kill_9_mid_write(tmp_path, caplog):
    path = str(tmp_path / "state.json")
    rng = random.Random(7)
    last = 0
    for _ in range(15):
        p = subprocess.Popen([sys.executable, "-c", WRITER, path, str(last)], cwd=ROOT,
                             env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE)
        assert p.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.01, 0.15))
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
        s = State(path)
        # A kill between the temporary file and the rename leaves that file (removed, at info): no warning.
        assert not [r for r in caplog.records if r.name == "exporter.state" and r.levelno >= logging.WARNING], \
            caplog.text
        value = s.high_water("/dev/x", "/", 0)
        assert value >= last, "the mark went backwards"
        last = value
    assert last > 0
    assert not [f for f in os.listdir(tmp_path) if "corrupt" in f]


def make_sysfs(root, disks):
    """A fake sysfs tree: {disk: {"size": sectors, "parts": [...], "dm": (name, [slaves])}}."""
    for disk, spec in disks.items():
        d = root / "devices" / disk
        d.mkdir(parents=True)
        (d / "size").write_text(str(spec.get("size", 0)))
        (d / "slaves").mkdir()
        for s in spec.get("slaves", []):
            (d / "slaves" / s).write_text("")
        if "dm" in spec:
            (d / "dm").mkdir()
            (d / "dm" / "name").write_text(spec["dm"] + "\n")
        (root / "block").mkdir(exist_ok=True)
        (root / "class" / "block").mkdir(parents=True, exist_ok=True)
        (root / "block" / disk).symlink_to(d)
        (root / "class" / "block" / disk).symlink_to(d)
        for part in spec.get("parts", []):
            p = d / part
            p.mkdir()
            (p / "partition").write_text("1")
            (root / "class" / "block" / part).symlink_to(p)


def test_topology_resolves_partitions_lvm_and_skips_virtual_devices(tmp_path):
    from exporter.sources.block_devices import BlockTopology
    make_sysfs(tmp_path, {"vda": {"size": 83886080, "parts": ["vda1", "vda2"]},
                          "vdb": {"size": 20971520},
                          "dm-0": {"size": 1000, "slaves": ["vda2"], "dm": "vg-root"},
                          "loop0": {"size": 100}})
    topo = BlockTopology(str(tmp_path))
    assert topo.disks_of("/dev/vda1") == {"vda"}
    assert topo.disks_of("/dev/mapper/vg-root") == {"vda"}      # through dm/name and slaves
    assert topo.disks_of("/dev/vdb") == {"vdb"}
    assert topo.disks_of("server:/export") == frozenset()       # NFS: no local disk
    assert topo.disk_sizes() == {"vda": 83886080 * 512, "vdb": 20971520 * 512}


def test_server_id_from_cloud_init(tmp_path, exporter_process):
    from exporter.sources.host import detect_server_id
    data = tmp_path / "var" / "lib" / "cloud" / "data"
    data.mkdir(parents=True)
    assert detect_server_id(str(tmp_path)) == ""
    (data / "instance-id").write_text("linode-12345\n")
    assert detect_server_id(str(tmp_path)) == "", "only OpenStack UUIDs are cloud mode's ids"
    (data / "instance-id").write_text("6D1C4A2E-0B1F-4C55-9E0A-3F2B7C9D8E01\n")
    assert detect_server_id(str(tmp_path)) == "6d1c4a2e-0b1f-4c55-9e0a-3f2b7c9d8e01"
    # Through the exporter: the configured id wins, cloud-init fills in otherwise.
    from conftest import samples
    exp = exporter_process({"host": {"root_path": str(tmp_path)}})
    info = samples(exp.scrape(), "imaging_host_info")
    assert [dict(k)["server_id"] for k in info] == ["6d1c4a2e-0b1f-4c55-9e0a-3f2b7c9d8e01"]


def test_database_servers_are_counted_once_and_recounted_in_the_background(tmp_path):
    import shutil
    import subprocess
    sleep = shutil.which("sleep")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    os.symlink(sleep, tmp_path / "b" / "postgres")           # a backend, named like its server
    os.symlink(sleep, tmp_path / "a" / "mysqld")
    server = tmp_path / "a" / "postgres"                      # the server: a script that forks backends
    server.write_text(f"#!/bin/sh\n{tmp_path / 'b' / 'postgres'} 60 &\n{tmp_path / 'b' / 'postgres'} 60 &\nwait\n")
    server.chmod(0o755)
    now = [1000.0]
    src = HostSource(HostConfig(), clock=lambda: now[0])
    assert dict(src.read().database_processes).get("postgresql", 0) == 0
    procs = [subprocess.Popen([str(server)], start_new_session=True),
             subprocess.Popen([str(tmp_path / "a" / "mysqld"), "60"])]
    try:
        time.sleep(0.3)
        assert dict(src.read().database_processes).get("postgresql", 0) == 0, "counts are reused for a while"
        now[0] += 31
        src.read()                                            # starts a recount in the background
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and src.databases.recounting.locked():
            time.sleep(0.02)
        counts = dict(src.read().database_processes)
        assert counts.get("postgresql") == 1, "one server, not its two backends"
        assert counts.get("mysql") == 1
    finally:
        os.killpg(procs[0].pid, signal.SIGKILL)
        procs[1].kill()
        for p in procs:
            p.wait()


def test_proc_scan_reads_names_and_parents_like_psutil(tmp_path):
    from exporter.sources.databases import ProcScanner, count_servers

    def scan_proc(path):          # no comm files here: every process's stat is read
        return ProcScanner(path)()

    def proc(pid, stat, cmdline=None):
        d = tmp_path / str(pid)
        d.mkdir()
        if stat is not None:
            (d / "stat").write_bytes(stat)
        if cmdline is not None:
            (d / "cmdline").write_bytes(cmdline)
    proc(1, b"1 (systemd) S 0 1 1 0 -1 4194560 1 0 0 0")
    proc(700, b"700 (postgres) S 1 700 700 0 -1 4194560 1 0 0 0")
    proc(701, b"701 (postgres) S 700 700 700 0 -1 4194560 1 0 0 0")          # a backend
    proc(800, b"800 (my (odd) name) S 1 800 800 0 -1 0 1 0 0 0")            # ")" inside the name
    # The kernel keeps 15 characters: clickhouse-server shows as clickhouse-serv.
    proc(900, b"900 (clickhouse-serv) S 1 900 900 0 -1 0 1 0 0 0", b"/usr/bin/clickhouse-server\0--config\0")
    proc(901, b"901 (clickhouse-serv) S 1 901 901 0 -1 0 1 0 0 0", b"/bin/sh\0/opt/run\0")  # a script
    proc(950, None)                                                          # exited since the listing
    (tmp_path / "self").mkdir()
    (tmp_path / "meminfo").write_text("")
    assert sorted(scan_proc(str(tmp_path))) == [
        (1, "systemd", 0), (700, "postgres", 1), (701, "postgres", 700), (800, "my (odd) name", 1),
        (900, "clickhouse-server", 1), (901, "clickhouse-serv", 1)]
    assert count_servers(scan_proc(str(tmp_path))) == (("clickhouse", 1), ("postgresql", 1))
    assert list(scan_proc(str(tmp_path / "missing"))) == []


def test_proc_scanner_reads_comm_and_the_stat_of_database_engines_only(tmp_path):
    from exporter.sources.databases import ProcScanner, count_servers
    for pid, name, ppid in ((1, "systemd", 0), (700, "postgres", 1), (701, "postgres", 700), (900, "nginx", 1)):
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "comm").write_bytes(f"{name}\n".encode())
        # The stat of a process that is not a database says something else: it must not be read.
        (d / "stat").write_bytes(f"{pid} ({name if name == 'postgres' else 'unread'}) S {ppid} 0 0".encode())
    found = sorted(ProcScanner(str(tmp_path))())
    assert found == [(1, "systemd", 0), (700, "postgres", 1), (701, "postgres", 700), (900, "nginx", 0)]
    assert count_servers(found) == (("postgresql", 1),)


def test_proc_scanner_rereads_new_changed_and_reused_pids_and_everything_now_and_then(tmp_path):
    from exporter.sources.databases import ProcScanner

    def proc(pid, name, ppid=1):
        d = tmp_path / str(pid)
        d.mkdir(exist_ok=True)
        (d / "stat").write_bytes(f"{pid} ({name}) S {ppid} 0 0 0".encode())
    now = [0.0]
    scan = ProcScanner(str(tmp_path), clock=lambda: now[0], full_every=300)
    proc(1, "systemd", 0)
    proc(10, "bash")                      # a fork of a shell, about to exec
    assert sorted(scan()) == [(1, "systemd", 0), (10, "bash", 1)]
    assert scan.reads == 2
    proc(10, "postgres")                  # ... it exec'd: its second read sees that
    now[0] = 30
    assert sorted(scan()) == [(1, "systemd", 0), (10, "postgres", 1)]
    assert scan.reads == 4
    now[0] = 60
    scan()                                # postgres read a second time: the same name, settled
    assert scan.reads == 5
    now[0] = 90
    proc(11, "mysqld")
    assert sorted(scan()) == [(1, "systemd", 0), (10, "postgres", 1), (11, "mysqld", 1)]
    assert scan.reads == 6, "settled processes are not read again, a new one is"
    # PID 10 ends and its number is used again: a new /proc entry (a new inode).
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "stat").write_bytes(b"10 (nginx) S 1 0 0 0")
    (tmp_path / "10" / "stat").unlink()
    (tmp_path / "10").rmdir()
    (tmp_path / "new").rename(tmp_path / "10")
    (tmp_path / "11" / "stat").unlink()
    (tmp_path / "11").rmdir()              # mysqld ended
    now[0] = 120
    assert sorted(scan()) == [(1, "systemd", 0), (10, "nginx", 1)]
    # A settled process that exec'd another program in place is seen at the full rescan.
    for t in (150, 180):
        now[0] = t
        scan()
    (tmp_path / "1" / "stat").write_bytes(b"1 (init) S 0 0 0 0")
    now[0] = 210
    assert (1, "systemd", 0) in scan(), "not re-read before the full rescan"
    reads = scan.reads
    now[0] = 300
    assert (1, "init", 0) in scan()
    assert scan.reads == reads + 2, "the full rescan reads every process"
    assert ProcScanner(str(tmp_path / "missing"))() == []
