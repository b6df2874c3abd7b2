"""The collector is paused during a device process's start-up and its objects frozen after, once per process."""

import gc

import pytest

from deft_ray.actors import collector
from deft_ray.actors.collector import start_up_collection


@pytest.fixture(autouse=True)
def restore_collector(monkeypatch):
    monkeypatch.setattr(collector, "_process_started", False)  # each test is a fresh process's start-up
    was_enabled = gc.isenabled()
    yield
    gc.unfreeze()  # give this test process's objects back to the collector
    (gc.enable if was_enabled else gc.disable)()


def test_collector_is_off_inside_and_back_on_after():
    gc.enable()
    with start_up_collection():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_objects_made_during_start_up_are_frozen():
    gc.enable()
    gc.unfreeze()
    with start_up_collection():
        made = [[index] for index in range(10_000)]
    assert gc.get_freeze_count() >= len(made)
    walked = {id(obj) for obj in gc.get_objects()}  # what collections walk: generations 0 to 2
    assert id(made[0]) not in walked and id(made[-1]) not in walked


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    with start_up_collection():
        pass
    assert not gc.isenabled()


def test_the_collector_comes_back_after_a_failed_start_up():
    gc.enable()
    with pytest.raises(RuntimeError), start_up_collection():
        raise RuntimeError("model build failed")
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0


def test_only_a_process_s_first_start_up_pauses_and_freezes():
    gc.enable()
    with start_up_collection():
        pass
    gc.unfreeze()
    with start_up_collection():  # a packed host rebuilding a failed device
        assert gc.isenabled()
        rebuilt = [[index] for index in range(1_000)]
    assert gc.get_freeze_count() == 0
    assert id(rebuilt[0]) in {id(obj) for obj in gc.get_objects()}
