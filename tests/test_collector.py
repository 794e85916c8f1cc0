"""The collector policy of notifyd/realtime/collector.py: long-lived objects frozen, cycles freed at a thaw."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from notifyd.realtime import collector as collector_module
from notifyd.realtime.collector import CHURN_FLOOR, Collector


class Node:
    """An object in a cycle with itself: only a collection frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def unfrozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(collector_module, "FREEZE_INTERVAL", 0.0)
    gc.unfreeze()
    yield
    gc.unfreeze()


def tracked() -> set[int]:
    return {id(o) for o in gc.get_objects()}


def test_tend_freezes_what_is_alive_and_a_thaw_after_churn_frees_the_cycles_frozen_meanwhile(unfrozen: None) -> None:
    collector = Collector()
    kept, dropped = Node(), Node()
    gone = weakref.ref(dropped)
    collector.tend(open_sessions=0)
    assert id(kept) not in tracked() and id(dropped) not in tracked()  # out of the collector's generations
    del dropped
    gc.collect()
    assert gone() is not None  # frozen: no collection frees it
    collector.closed = CHURN_FLOOR // 4  # a quarter of the sessions (at least CHURN_FLOOR) closed since the last thaw
    collector.tend(open_sessions=0)
    assert gone() is None and collector.closed == 0
    assert id(kept) not in tracked()  # frozen again


def test_young_cycles_are_collected_before_a_freeze_and_no_thaw_comes_before_the_churn(unfrozen: None) -> None:
    collector = Collector()
    collector.tend(open_sessions=0)
    young = weakref.ref(Node())  # garbage already, in a cycle
    frozen = Node()
    gone = weakref.ref(frozen)
    collector.tend(open_sessions=0)
    assert young() is None
    del frozen
    collector.closed = CHURN_FLOOR // 4 - 1  # short of a quarter of CHURN_FLOOR
    collector.tend(open_sessions=0)
    assert gone() is not None and collector.closed == CHURN_FLOOR // 4 - 1
