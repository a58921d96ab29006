"""Growing back-off after failed sign-ins (ASVS V6.3.1, 21 CFR 11.300(d)): a few free attempts, then each further
failure doubles the wait, up to a cap. Kept once per account and once per source address."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class LockoutPolicy:
    """free_attempts tries may be made back to back; the failure that uses up the last of them locks for
    base_seconds, and each later failure multiplies the lock by factor, never beyond max_seconds. A failure
    more than forget_after after the previous one starts the count again, so old mistakes (or a shared NAT
    address's) do not pile up."""

    free_attempts: int = 5
    base_seconds: float = 30
    factor: float = 2
    max_seconds: float = 3600
    forget_after: timedelta = timedelta(hours=24)

    def __post_init__(self) -> None:
        if self.free_attempts < 1:
            raise ValueError("free_attempts must be at least 1")
        if not 0 < self.base_seconds <= self.max_seconds:
            raise ValueError("base_seconds must be positive and at most max_seconds")
        if self.factor < 1:
            raise ValueError("factor must be at least 1")

    def lock_seconds(self, failures: int) -> float:
        if failures < self.free_attempts:
            return 0.0
        try:
            seconds = self.base_seconds * float(self.factor) ** (failures - self.free_attempts)
        except OverflowError:
            return self.max_seconds
        return min(seconds, self.max_seconds)

    def locked_until(self, failures: int, last_failure_at: datetime) -> datetime | None:
        """When the next attempt may be made; None when failures are still within the free attempts."""
        seconds = self.lock_seconds(failures)
        return last_failure_at + timedelta(seconds=seconds) if seconds else None

    def is_locked(self, attempts: Attempts, now: datetime) -> bool:
        if attempts.last_failure_at is None:
            return False
        until = self.locked_until(attempts.failures, attempts.last_failure_at)
        return until is not None and now < until


@dataclass(frozen=True)
class Attempts:
    failures: int = 0
    last_failure_at: datetime | None = None

    def after_failure(self, now: datetime, forget_after: timedelta | None = None) -> Attempts:
        """Pass the policy's forget_after to let a long-quiet count start again."""
        stale = forget_after is not None and self.last_failure_at is not None and \
            now - self.last_failure_at >= forget_after
        return Attempts(failures=1 if stale else self.failures + 1, last_failure_at=now)

    def after_success(self) -> Attempts:
        """Only for the per-account count: an address's count should just age out, or an attacker holding one
        valid account could clear it between guesses at others."""
        return Attempts()


#: Configure either with dataclasses.replace(ADDRESS_LOCKOUT, free_attempts=…) or LockoutPolicy(…).
#: Per account: five free tries, then 30 s, 1 min, 2 min … capped at an hour.
ACCOUNT_LOCKOUT = LockoutPolicy()
#: Per source address: looser, since a hospital's NAT address carries many users' honest typos.
ADDRESS_LOCKOUT = LockoutPolicy(free_attempts=20, base_seconds=30, factor=2, max_seconds=3600)

