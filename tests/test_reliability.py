"""Reliability: seeded fault sequences against the fake clouds, hung mounts under
concurrent scrapes, and a host with 1,000 mounts.

Bounded in time: every fault is short (request timeout 0.3 s) and every loop
has a fixed count.
"""
import gc
import os
import random
import threading
import time
import tracemalloc

import pytest
from prometheus_client import generate_latest

from exporter import profiles
from exporter.collectors.exporter import ExporterCollector, HostPart
from exporter.config import CloudConfig, HostConfig
from exporter.ledger import JobLedger
from exporter.poller import Poller
from exporter.sources.host import HostSource
from exporter.sources.linode import LinodeSource
from exporter.state import State
from conftest import parse_metrics, samples
from fakes.linode_api import FakeLinodeAPI

TIMEOUT = 0.3
CYCLES = 200

LINODE_FAULTS = [("error", {"status": 500}), ("error", {"status": 503}), ("error", {"status": 401}),
                 ("rate_limited", {"retry_after": 1}), ("auth_mid_pagination", {}), ("slow", {"delay": 1}),
                 ("hang", {}), ("malformed_json", {}), ("missing_data", {}), ("page_loop", {}),
                 ("pages_grow", {}), ("short_page", {}), ("refused", {})]


def scrape(collector):
    from prometheus_client import CollectorRegistry
    reg = CollectorRegistry()
    reg.register(collector)
    return parse_metrics(generate_latest(reg).decode())


def run_fault_sequence(poller, fake_set, fake_clear, faults, seed, cloud, fake_requests):
    """CYCLES refreshes; each cycle a fault (or none), in a seeded random order that has every fault."""
    rng = random.Random(seed)
    plan = [f for f in faults] + [None] * (CYCLES - len(faults))
    rng.shuffle(plan)
    collector = ExporterCollector("test", pollers=[poller])
    good_images = None
    seen_faults = set()
    tracemalloc.start()
    baseline = None
    try:
        for i, fault in enumerate(plan):
            if fault:
                fake_set(*fault)
                seen_faults.add(fault[0])
            fake_requests.clear()              # the fake's own log, in this process too
            ok = poller.refresh_once()
            if fault:
                fake_clear()
            m = scrape(collector)              # every scrape succeeds, fault or not
            up = list(samples(m, "imaging_source_up", cloud=cloud).values())
            assert up == [1 if ok else 0]
            images = samples(m, "imaging_images", cloud=cloud)
            if ok:
                good_images = images
            elif good_images is not None:
                assert images == good_images, "a failed refresh changed the published data"
            if i == 50:
                gc.collect()
                baseline = tracemalloc.get_traced_memory()[0]
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    return seen_faults, grown


def test_linode_survives_every_fault_in_random_order(tmp_path, monkeypatch):
    with FakeLinodeAPI("account") as fake:
        monkeypatch.setenv("LINODE_TOKEN", fake.token)
        # Enough events for several pages, so pagination faults have a page 2 to spoil.
        cfg = CloudConfig(name="akamai", provider="linode", api_url=fake.url, request_timeout=TIMEOUT)
        source = LinodeSource(cfg, profiles.get("linode"), clock=fake.clock)
        source_page_size = 500
        import exporter.sources.linode as linode_mod
        monkeypatch.setattr(linode_mod, "PAGE_SIZE", 25)   # our own constant: 24 images + events need pages
        poller = Poller(source, "akamai", 1, cfg.lookback, ledger=JobLedger(State(str(tmp_path / "s.json")), "akamai"),
                        clock=fake.clock)
        seen, grown = run_fault_sequence(poller, lambda mode, params: fake.set_fault(mode, **params),
                                         fake.clear_fault, LINODE_FAULTS, seed=20261123, cloud="akamai",
                                         fake_requests=fake.requests)
        source.close()
        assert source_page_size == 500
    assert seen == {f[0] for f in LINODE_FAULTS}
    assert poller.health.errors, "faults were counted"
    assert grown < 512 * 1024, f"memory grew by {grown} bytes over {CYCLES - 50} refreshes"


def test_poller_thread_survives_a_source_that_raises_anything(tmp_path):
    class Flaky:
        provider = "linode"
        calls = 0

        def refresh(self):
            Flaky.calls += 1
            raise [ValueError("bad"), KeyError("x"), RecursionError(), MemoryError()][Flaky.calls % 4]
    p = Poller(Flaky(), "x", 0.01, 3600)
    p.start()
    try:
        deadline = time.monotonic() + 5
        while Flaky.calls < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert p.alive and Flaky.calls >= 20
        assert p.health.errors.get("other", 0) >= 19
    finally:
        p.stop()


def test_hung_mount_under_concurrent_scrapes(tmp_path):
    release = threading.Event()

    def stat(path):
        if path == "/":
            release.wait(30)
        return os.statvfs(path)
    host = HostPart(HostSource(HostConfig(mount_timeout=0.5), stat_fn=stat), State(None), (), "generic", "")
    collector = ExporterCollector("test", host=host)
    durations, errors = [], []

    def scraper():
        for _ in range(5):
            t = time.monotonic()
            try:
                m = scrape(collector)
                assert samples(m, "imaging_filesystem_device_error", mountpoint="/")
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                errors.append(e)
            durations.append(time.monotonic() - t)
    threads = [threading.Thread(target=scraper) for _ in range(10)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        release.set()
    assert not errors and len(durations) == 50
    assert max(durations) < 0.5 + 1.0, "a scrape waited on the hung mount beyond its timeout"
    assert sorted(durations)[25] < 0.25, "most scrapes should skip the stuck mount at once"


def test_host_with_1000_mounts(tmp_path):
    root = tmp_path / "root"
    (root / "proc" / "1").mkdir(parents=True)
    lines = []
    for i in range(1000):
        (root / "mnt" / f"vol{i}").mkdir(parents=True)
        lines.append(f"/dev/vdb{i} /mnt/vol{i} ext4 rw,relatime 0 0")
    (root / "proc" / "1" / "mounts").write_text("\n".join(lines) + "\n")
    host = HostPart(HostSource(HostConfig(root_path=str(root))), State(str(tmp_path / "s.json")), (), "generic", "")
    collector = ExporterCollector("test", host=host)
    for _ in range(3):
        m = scrape(collector)
        assert len(samples(m, "imaging_filesystem_size_bytes")) == 1000
        assert len(samples(m, "imaging_filesystem_used_high_water_bytes")) == 1000
        assert not samples(m, "imaging_filesystem_device_error")
