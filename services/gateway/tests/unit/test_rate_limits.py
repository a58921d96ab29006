from gateway.domain import RateLimiter, TokenBucket


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(capacity=3, per_second=1, updated=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == 1.0
    assert bucket.take(100.5) == 0.5
    assert bucket.take(101.0) == 0.0


def test_limits_are_per_key() -> None:
    limiter = RateLimiter(capacity=1, per_second=0.001)
    assert limiter.retry_after("a") == 0
    assert limiter.retry_after("a") > 0
    assert limiter.retry_after("b") == 0


def test_a_session_without_roles_may_only_enrol_and_sign_out() -> None:
    from gateway.domain import ENROLMENT_ROUTES, ROUTE_ROLES, may_call
    from radcommon.contracts import RoleValues

    assert may_call(frozenset(), ("POST", "/api/auth/2fa/enrol"))
    assert not may_call(frozenset(), ("GET", "/api/worklist"))
    assert may_call(frozenset({RoleValues.VIEWER}), ("GET", "/api/worklist"))
    assert not may_call(frozenset({RoleValues.OPERATOR}), ("GET", "/api/worklist"))
    assert not may_call(frozenset({RoleValues.ADMIN}), ("GET", "/api/not-a-route"))
    assert ENROLMENT_ROUTES <= ROUTE_ROLES.keys()
