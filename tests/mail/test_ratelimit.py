"""One sending rate for every worker, and one shared pause after a 429."""

import itertools

import pytest

from mail.ratelimit import LocalRateLimiter, RedisRateLimiter, wait_for_turn


def test_the_local_schedule_spaces_messages_and_batches_cost_their_size():
    clock = [100.0]
    limiter = LocalRateLimiter(10, clock=lambda: clock[0])
    assert [round(limiter.reserve(), 3) for _ in range(3)] == [0.0, 0.1, 0.2]
    clock[0] += 1.0  # idle time is not saved up into a burst
    assert limiter.reserve(cost=5) == 0.0
    assert round(limiter.reserve(), 3) == 0.5  # the batch of 5 took half a second of the rate


def test_a_pause_holds_everyone_and_reserves_nothing():
    clock = [0.0]
    limiter = LocalRateLimiter(0, clock=lambda: clock[0])
    limiter.pause(3)
    assert limiter.reserve() == -3.0
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clock[0] += seconds

    assert wait_for_turn(limiter, 1, sleep=sleep) == 3.0
    assert slept == [3.0]


@pytest.mark.services
def test_two_redis_limiters_share_one_schedule_and_one_pause(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    prefix = "paperboy:esp:test-shared"
    client.delete(f"{prefix}:tat", f"{prefix}:pause")
    first = RedisRateLimiter(20, client=client, prefix=prefix)
    second = RedisRateLimiter(20, client=client, prefix=prefix)
    waits = [first.reserve(), second.reserve(), first.reserve(), second.reserve()]
    # One schedule: each reservation is 50 ms after the one before, whoever made it.
    assert waits[0] == pytest.approx(0.0, abs=0.01)
    for earlier, later in itertools.pairwise(waits):
        assert later - earlier == pytest.approx(0.05, abs=0.01)
    first.pause(2)
    assert second.reserve() == pytest.approx(-2.0, abs=0.1)
    unlimited = RedisRateLimiter(0, client=client, prefix=prefix)
    assert unlimited.reserve() < -1.5  # the pause reaches limiters without a rate too
    client.delete(f"{prefix}:tat", f"{prefix}:pause")
    client.close()
