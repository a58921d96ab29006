from dataclasses import FrozenInstanceError, replace
from datetime import UTC, datetime, timedelta

import pytest

from identity.domain.lockout import ACCOUNT_LOCKOUT, ADDRESS_LOCKOUT, Attempts, LockoutPolicy

T0 = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)


def seconds(policy: LockoutPolicy, failures: int) -> float | None:
    until = policy.locked_until(failures, T0)
    return None if until is None else (until - T0).total_seconds()


def test_the_free_attempts_are_not_delayed():
    assert [seconds(ACCOUNT_LOCKOUT, n) for n in range(5)] == [None] * 5


def test_the_lock_starts_at_the_last_free_attempt_and_doubles():
    assert [seconds(ACCOUNT_LOCKOUT, n) for n in range(5, 10)] == [30, 60, 120, 240, 480]


@pytest.mark.parametrize("failures", [12, 13, 100, 10_000, 10**9])
def test_the_lock_is_capped_and_huge_counts_do_not_overflow(failures: int):
    assert seconds(ACCOUNT_LOCKOUT, failures) == 3600


def test_the_per_address_policy_is_looser():
    assert seconds(ADDRESS_LOCKOUT, 19) is None
    assert seconds(ADDRESS_LOCKOUT, 20) == 30
    assert seconds(ADDRESS_LOCKOUT, 21) == 60


def test_policies_are_configured_by_keyword_or_replace():
    assert seconds(replace(ADDRESS_LOCKOUT, free_attempts=3), 3) == 30
    flat = LockoutPolicy(free_attempts=2, base_seconds=10, factor=1, max_seconds=10)
    assert [seconds(flat, n) for n in (1, 2, 3, 50)] == [None, 10, 10, 10]


@pytest.mark.parametrize("kwargs", [{"free_attempts": 0}, {"base_seconds": 0}, {"factor": 0.5},
                                    {"base_seconds": 100, "max_seconds": 10}])
def test_a_nonsensical_policy_is_rejected(kwargs: dict[str, float]):
    with pytest.raises(ValueError):
        LockoutPolicy(**kwargs)  # type: ignore[arg-type]


def test_failures_accumulate_and_success_clears_them():
    attempts = Attempts()
    for minute in range(3):
        attempts = attempts.after_failure(T0 + timedelta(minutes=minute))
    assert attempts == Attempts(failures=3, last_failure_at=T0 + timedelta(minutes=2))
    assert attempts.after_success() == Attempts(0, None)


def test_attempts_are_immutable():
    with pytest.raises(FrozenInstanceError):
        Attempts().failures = 3  # type: ignore[misc]


def test_a_long_quiet_spell_starts_the_count_again():
    attempts = Attempts(failures=9, last_failure_at=T0)
    assert attempts.after_failure(T0 + timedelta(hours=24), ACCOUNT_LOCKOUT.forget_after).failures == 1
    assert attempts.after_failure(T0 + timedelta(hours=23), ACCOUNT_LOCKOUT.forget_after).failures == 10
    assert attempts.after_failure(T0 + timedelta(days=30)).failures == 10


def test_is_locked_until_the_lock_ends():
    attempts = Attempts(failures=6, last_failure_at=T0)
    assert ACCOUNT_LOCKOUT.is_locked(attempts, T0 + timedelta(seconds=59))
    assert not ACCOUNT_LOCKOUT.is_locked(attempts, T0 + timedelta(seconds=60))
    assert not ACCOUNT_LOCKOUT.is_locked(Attempts(), T0)
    assert not ACCOUNT_LOCKOUT.is_locked(Attempts(failures=4, last_failure_at=T0), T0)


def test_a_guesser_who_waits_out_each_lock_waits_longer_each_time():
    attempts, now, waits = Attempts(), T0, []
    for _ in range(9):
        attempts = attempts.after_failure(now)
        until = ACCOUNT_LOCKOUT.locked_until(attempts.failures, now)
        waits.append(0 if until is None else (until - now).total_seconds())
        now = until or now + timedelta(seconds=1)
    assert waits == [0, 0, 0, 0, 30, 60, 120, 240, 480]
