"""The watch backoff: client-go's numbers, and when it forgets past failures."""
from painchain_connector.backoff import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _ceilings(backoff: Backoff, n: int) -> list[float]:
    return [round(backoff.next_delay(), 3) for _ in range(n)]


def test_backoff_doubles_from_0_8_to_a_30_second_cap():
    backoff = Backoff(clock=Clock(), rng=lambda: 1.0)
    assert _ceilings(backoff, 8) == [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]


def test_a_failure_two_minutes_into_an_open_watch_starts_again_from_the_first_delay():
    clock = Clock()
    backoff = Backoff(clock=clock, rng=lambda: 1.0)
    _ceilings(backoff, 7)  # an outage
    backoff.healthy()  # the watch is open again
    clock.now += 300  # five quiet minutes, then the stream is cut mid-way
    assert backoff.next_delay() == 0.8


def test_streams_that_fail_soon_after_opening_keep_backing_off():
    clock = Clock()
    backoff = Backoff(clock=clock, rng=lambda: 1.0)
    delays = []
    for _ in range(6):
        backoff.healthy()
        clock.now += 10
        delays.append(round(backoff.next_delay(), 3))
    assert delays == [0.8, 1.6, 3.2, 6.4, 12.8, 25.6]


def test_a_delivered_change_forgets_past_failures_at_once():
    backoff = Backoff(clock=Clock(), rng=lambda: 1.0)
    _ceilings(backoff, 7)
    backoff.progress()
    assert backoff.next_delay() == 0.8
