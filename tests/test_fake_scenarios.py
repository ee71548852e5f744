"""The scenario format every fake cloud API serves (tests/fakes/scenario.py), on its own."""
import pytest

from fakes.scenario import Scenario, parse_offset

DOC = {
    "about": "an image saved in two steps, then deleted",
    "start": "2024-05-01T12:00:00Z",
    "project": {"name": "demo"},
    "objects": {"images": {"img-1": {"status": "saving", "created": "-25h", "server": {"seen": "-1h"}}}},
    "steps": [{"at": "30m", "images": {"img-1": None}},
              {"at": "5m", "images": {"img-1": {"status": "active", "updated": "0s"},
                                      "img-2": {"status": "queued"}}}],
}
START = 1714564800.0


def test_times_are_offsets_from_their_step_at_any_depth():
    sc = Scenario.from_document(DOC)
    assert sc.start == START and sc.header == {"project": {"name": "demo"}} and sc.about.startswith("an image")
    assert sc.times() == [START, START + 300, START + 1800], "steps in time order"
    state = sc.state(1, time_fields=("created", "updated", "seen"))
    assert state["images"]["img-1"] == {"status": "active", "created": START - 25 * 3600,
                                        "server": {"seen": START - 3600}, "updated": START + 300}
    assert state["images"]["img-2"] == {"status": "queued"}
    assert set(sc.state(2)["images"]) == {"img-2"}, "~ deletes"
    assert sc.state(0, ())["images"]["img-1"]["created"] == "-25h", "only the named fields are times"


def test_stamps_and_absolute_times():
    sc = Scenario(start=START, objects={"images": {"a": {"created_at": "-1h"}}},
                  steps=({"at": "10m", "images": {"a": {"status": "x"}, "b": {"when": "2024-05-01T00:00:00"}}},))
    state = sc.state(1, time_fields=("when",), stamps=("created_at", "updated_at"))
    assert state["images"]["a"] == {"created_at": START - 3600, "updated_at": START + 600, "status": "x"}
    assert state["images"]["b"] == {"when": START - 12 * 3600, "created_at": START + 600, "updated_at": START + 600}


def test_walking_by_clock_and_moving_to_real_time():
    sc = Scenario.from_document(DOC)
    assert [sc.step_at(START + s) for s in (0, 299, 300, 1800)] == [0, 0, 1, 2]
    later = sc.rebased(START + 86400)
    assert later.state(0, ("created",))["images"]["img-1"]["created"] == START + 86400 - 25 * 3600
    added = sc.with_step(START + 300, {"images": {"img-3": {}}})
    assert [s.get("at") for s in added.steps] == ["5m", 300.0, "30m"], "after the changes at the same time"


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("-23h30m", -84600), ("+2d", 172800), (15, 15.0)])
def test_durations(text, seconds):
    assert parse_offset(text) == seconds


def test_a_bad_duration_says_what_to_write():
    with pytest.raises(ValueError, match="use e.g. 90s"):
        parse_offset("25 hours")
