"""Compute slots: at most N holders at once across threads and processes, the first freed slot
goes to the waiter, a dead holder's slot comes free, and a wait runs out with a clear error."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import pytest

from deft_ray.actors.slots import ComputeSlots, ComputeSlotTimeout


def fresh_slots(count: int, timeout_s: float = 30.0) -> ComputeSlots:
    return ComputeSlots(f"test-{uuid.uuid4().hex}", count, timeout_s)


class Holder(threading.Thread):
    """Holds a slot from ``start()`` until ``release()``."""

    def __init__(self, slots: ComputeSlots):
        super().__init__(daemon=True)
        self.slots, self.holding, self.done = slots, threading.Event(), threading.Event()

    def run(self):
        with self.slots.held():
            self.holding.set()
            self.done.wait(30)

    def release(self):
        self.done.set()
        self.join(10)


def hold_all(slots: ComputeSlots) -> list[Holder]:
    holders = []
    for _ in range(slots.count):  # one at a time: holder i takes slot-i
        holders.append(Holder(slots))
        holders[-1].start()
        assert holders[-1].holding.wait(10)
    return holders


def test_no_more_than_count_compute_at_once_and_count_do():
    slots, lock = fresh_slots(2), threading.Lock()
    inside, most, finished = [0], [0], []

    def work(index: int) -> None:
        with slots.held():
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= 1
        finished.append(index)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    slots.remove()
    assert sorted(finished) == list(range(6)) and most[0] == 2


def test_a_waiter_takes_whichever_slot_comes_free_first():
    slots = fresh_slots(3)
    holders = hold_all(slots)
    waiter = Holder(slots)
    waiter.start()
    assert not waiter.holding.wait(0.3)  # every slot is taken
    holders[2].release()  # the last slot, not the first
    assert waiter.holding.wait(10)
    for holder in (*holders[:2], waiter):
        holder.release()
    slots.remove()


def test_slots_granted_to_a_waiter_that_already_has_one_are_passed_on():
    """A waiter blocks on both taken slots and wins the first freed; when the other frees, its
    lock goes to the waiter's idle thread, which must let it go at once."""
    slots = fresh_slots(2)
    holders = hold_all(slots)
    waiter = Holder(slots)
    waiter.start()
    holders[0].release()
    assert waiter.holding.wait(10)
    holders[1].release()
    late = Holder(slots)
    late.start()
    assert late.holding.wait(10)  # slot-1 is free again, though a thread of the waiter was granted it
    waiter.release()
    late.release()
    slots.remove()


def test_a_holder_that_dies_frees_its_slot_and_a_wait_runs_out_with_a_clear_error():
    slots = fresh_slots(1, timeout_s=0.3)
    script = ("import sys, time; from deft_ray.actors.slots import ComputeSlots\n"
              f"slots = ComputeSlots({slots.run_id!r}, 1, 30.0)\n"
              "with slots.held():\n    print('held', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ComputeSlotTimeout, match=r"no compute slot of the 1 on this node came free within "
                                                     r"round_timeout_s = 0 s; raise round_timeout_s"):
            with slots.held():
                pass
    finally:
        holder.kill()
        holder.wait(10)
    with slots.held():  # the kernel released the dead process's lock
        pass
    slots.remove()
    assert not slots.folder.exists()


class TurnHolder(Holder):
    def __init__(self, slots: ComputeSlots, turn: int):
        super().__init__(slots.for_turn(7, turn))


def test_the_order_after_the_first_wave_waits_for_it_even_when_it_arrives_first(monkeypatch):
    from deft_ray.actors import slots as slots_module

    monkeypatch.setattr(slots_module, "TURN_WAIT_S", 30.0)
    slots = fresh_slots(2)
    early = TurnHolder(slots, 2)  # the third order of the dispatch arrives before the first two
    early.start()
    assert not early.holding.wait(0.3)  # both slots are free, but the first two have not taken theirs
    first_wave = [TurnHolder(slots, 0), TurnHolder(slots, 1)]
    for holder in first_wave:
        holder.start()
        assert holder.holding.wait(10)
    assert not early.holding.wait(0.2)  # now it waits for a slot
    first_wave[1].release()
    assert early.holding.wait(10)
    assert not list(slots.folder.glob("taken-*"))  # the marks are cleared
    assert slots.for_turn(7, 3).turn is None  # later orders go out as uploads arrive
    for holder in (first_wave[0], early):
        holder.release()
    slots.remove()


def test_the_wait_for_the_first_wave_is_bounded():
    from deft_ray.actors.slots import TURN_WAIT_S

    slots = fresh_slots(2)
    early = TurnHolder(slots, 2)
    early.start()
    assert early.holding.wait(TURN_WAIT_S + 10)  # the first two never come (died, or on another node)
    early.release()
    slots.remove()
