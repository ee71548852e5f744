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
from prometheus_client import CollectorRegistry, generate_latest

from exporter import profiles
from exporter.app import assemble, build_exposition
from exporter.config import Config, HostConfig, cloud_config
from exporter.poller import Poller
from exporter.sources.host import HostSource
from exporter.sources.linode.source import LinodeSource
from exporter.state import State
from conftest import parse_metrics, samples, wait_until
from fakes.linode_api import FakeLinodeAPI
from openstack_cloud import fake_entry

TIMEOUT = 0.3
CYCLES = 200

LINODE_FAULTS = [("error", {"status": 500}), ("error", {"status": 503}), ("error", {"status": 401}),
                 ("rate_limited", {"retry_after": 1}), ("auth_mid_pagination", {}), ("slow", {"delay": 1}),
                 ("hang", {}), ("malformed_json", {}), ("missing_data", {}), ("page_loop", {}),
                 ("pages_grow", {}), ("short_page", {}), ("refused", {})]


def scrape(collector):
    reg = CollectorRegistry()
    reg.register(collector)
    return parse_metrics(generate_latest(reg).decode())


def run_fault_sequence(poller, fake_set, fake_clear, faults, seed, cloud, fake_requests):
    """CYCLES refreshes; each cycle a fault (or none), in a seeded random order that has every fault."""
    rng = random.Random(seed)
    plan = [f for f in faults] + [None] * (CYCLES - len(faults))
    rng.shuffle(plan)
    # The exporter's own serving path: health per scrape, cloud metrics cached per refresh.
    exposition = build_exposition([poller])
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
            m = parse_metrics(exposition.raw().decode())   # every scrape succeeds, fault or not
            up = list(samples(m, "imaging_source_up", cloud=cloud).values())
            assert up == [1 if ok else 0]
            images = samples(m, "imaging_images", cloud=cloud)
            if ok:
                assert images, "a good refresh publishes the account's images"
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
        cfg = cloud_config("linode", "akamai", api_url=fake.url, request_timeout=TIMEOUT)
        source = LinodeSource(cfg, profiles.get("linode"), clock=fake.clock)
        source_page_size = 500
        import exporter.sources.linode.source as linode_mod
        monkeypatch.setattr(linode_mod, "PAGE_SIZE", 25)   # our own constant: 24 images + events need pages
        poller = Poller(source, "akamai", 1, cfg.lookback, state=State(str(tmp_path / "s.json")),
                        clock=fake.clock)
        seen, grown = run_fault_sequence(poller, lambda mode, params: fake.set_fault(mode, **params),
                                         fake.clear_faults, LINODE_FAULTS, seed=20261123, cloud="akamai",
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
    # An NFS share that hangs: local block-device filesystems are stat'ed inline, network ones guarded.
    from host_roots import nfs_root
    root, share = nfs_root(tmp_path)

    def stat(path):
        if path == share:
            release.wait(30)
        return os.statvfs(path)
    host = HostConfig(mount_timeout=0.5, root_path=root)
    collector = assemble(Config(host=host, state_file=str(tmp_path / "s.json")), {"host": True},
                         host_source=HostSource(host, stat_fn=stat)).exposition.collector
    durations, errors = [], []

    def scraper():
        for _ in range(5):
            t = time.monotonic()
            try:
                m = scrape(collector)
                assert samples(m, "imaging_filesystem_device_error", mountpoint="/srv/share")
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
    # Released, the hung call returns and the share is read again (and its log line falls in this test).
    wait_until(lambda: not samples(scrape(collector), "imaging_filesystem_device_error", mountpoint="/srv/share"),
               what="the released share to be read again")


def test_host_with_1000_mounts(tmp_path):
    root = tmp_path / "root"
    (root / "proc" / "1").mkdir(parents=True)
    lines = []
    for i in range(1000):
        (root / "mnt" / f"vol{i}").mkdir(parents=True)
        lines.append(f"/dev/vdb{i} /mnt/vol{i} ext4 rw,relatime 0 0")
    (root / "proc" / "1" / "mounts").write_text("\n".join(lines) + "\n")
    config = Config(host=HostConfig(root_path=str(root)), state_file=str(tmp_path / "s.json"))
    collector = assemble(config, {"host": True}).exposition.collector
    for _ in range(3):
        m = scrape(collector)
        assert len(samples(m, "imaging_filesystem_size_bytes")) == 1000
        assert len(samples(m, "imaging_filesystem_used_high_water_bytes")) == 1000
        assert not samples(m, "imaging_filesystem_device_error")


# ---- OpenStack: every fault of the fake cloud, through unpatched openstacksdk ----------------

def _openstack_faults():
    """(name, what the fake does, the reason the refresh must fail with; None: it must succeed)."""
    from fakes.faults import Fault
    return [
        ("500", lambda: Fault("error", r"/v2/images$", 500), "http_5xx"),
        ("503-nova", lambda: Fault("error", r"/servers/detail$", 503), "http_5xx"),
        ("500-usage", lambda: Fault("error", r"/info/usage$", 500), "http_5xx"),
        ("401-mid-pagination", lambda: Fault("error", r"/v2/images$", 401, skip=1), "auth"),
        ("403-cinder", lambda: Fault("error", r"/snapshots/detail$", 403), "auth"),
        ("429", lambda: Fault("error", r"/v2/images$", 429, headers={"Retry-After": "1"}), "rate_limited"),
        ("404-nova", lambda: Fault("error", r"/servers/detail$", 404), "http_4xx"),
        ("malformed-page-2", lambda: Fault("malformed_json", r"/v2/images$", skip=1), "malformed"),
        ("malformed-nova", lambda: Fault("malformed_json", r"/servers/detail$"), "malformed"),
        ("next-link-loops", lambda: Fault("page_loop", r"/v2/images$"), "pagination"),
        ("pages-overlap", lambda: Fault("page_overlap", r"/servers/detail$"), "pagination"),
        ("slow", lambda: Fault("slow", r"/v2/images$", delay=3 * TIMEOUT), "timeout"),
        ("hang-mid-pagination", lambda: Fault("hang", r"/servers/detail$", skip=1), "timeout"),
        ("stall-in-body", lambda: Fault("stall", r"/v2/images$"), "timeout"),
        ("keystone-down", "keystone-down", "http_5xx"),      # the token expired and Keystone answers 500
        ("token-expired", "token-expired", None),            # renewed on the way: not a failure
        ("refused", "refused", "connection"),
    ]


@pytest.mark.filterwarnings(r"ignore::PendingDeprecationWarning:openstack.*")
def test_openstack_survives_every_fault_in_random_order(tmp_path, monkeypatch):
    import yaml
    from exporter.sources.openstack.source import OpenStackSource
    from fakes.faults import Fault
    from fakes.openstack_api import FakeOpenStack
    from fakes.openstack_scenarios import load_scenario
    scenario = load_scenario("project")
    faults = _openstack_faults()
    actions = {name: make for name, make, _ in faults}
    reasons = {}                                         # fault name -> the reasons its refreshes failed with
    with FakeOpenStack(scenario) as fake:
        (tmp_path / "clouds.yaml").write_text(yaml.safe_dump({"clouds": {"fake": fake_entry(fake)}}))
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "clouds.yaml"))
        for var in ("OS_CLOUD", "OS_AUTH_URL", "OS_PASSWORD", "OS_USERNAME", "OS_PROJECT_NAME"):
            monkeypatch.delenv(var, raising=False)
        cfg = cloud_config("openstack", "lab", cloud="fake", request_timeout=TIMEOUT)
        # 4 a page: the images (8) take three pages, the servers (4) two, so page 2 can be spoiled.
        source = OpenStackSource(cfg, profiles.get("openstack"), clock=fake.clock, page_size=4)
        poller = Poller(source, "lab", 1, cfg.lookback, state=State(str(tmp_path / "s.json")),
                        clock=fake.clock)
        current = []

        def fake_set(name, _make):
            action = actions[name]
            current[:] = [name, dict(poller.health.errors)]
            if action == "refused":
                fake.refuse()
            elif action == "token-expired":
                fake.expire_tokens()
            elif action == "keystone-down":
                fake.expire_tokens()
                fake.add_fault(Fault("error", r"/auth/tokens$", 500))
            else:
                fake.add_fault(action())

        def fake_clear():
            name, before = current
            new = {r for r, n in poller.health.errors.items() if n > before.get(r, 0)}
            reasons.setdefault(name, set()).update(new)
            fake.clear_faults()
            fake.accept()

        try:
            seen, grown = run_fault_sequence(poller, fake_set, fake_clear, [(n, None) for n, _, _ in faults],
                                             seed=20261124, cloud="lab", fake_requests=fake.requests)
        finally:
            source.close()
        methods = {(m, p) for m, p, _, _ in fake.requests if m != "GET"}
    assert seen == {n for n, _, _ in faults}
    assert reasons == {n: ({r} if r else set()) for n, _, r in faults}, "each fault failed for its own reason"
    assert "other" not in poller.health.errors
    assert methods <= {("POST", "/identity/v3/auth/tokens")}
    assert grown < 512 * 1024, f"memory grew by {grown} bytes over {CYCLES - 50} refreshes"


def test_the_cyclic_gc_is_paused_during_a_refresh_and_back_on_after_even_a_failure(tmp_path):
    from exporter.errors import SourceError
    seen = []

    class Source:
        provider = "linode"

        def __init__(self, fail):
            self.fail = fail

        def refresh(self):
            seen.append(gc.isenabled())
            if self.fail:
                raise SourceError("timeout", "no answer")
            raise RuntimeError("a bug")

    assert gc.isenabled()
    for fail in (True, False):
        assert not Poller(Source(fail), "c", 60, 3600, state=State(str(tmp_path / "s.json"))).refresh_once()
        assert gc.isenabled()
    assert seen == [False, False]
