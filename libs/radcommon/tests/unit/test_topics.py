import pytest

from radcommon.messaging import RetryPolicy, topic_matches


@pytest.mark.parametrize(("pattern", "key", "expected"), [
    ("dicom-ingest.study.received.v1", "dicom-ingest.study.received.v1", True),
    ("dicom-ingest.study.received.v1", "dicom-ingest.study.updated.v1", False),
    ("*.study.*.v1", "dicom-ingest.study.updated.v1", True),
    ("*.study.*.v1", "dicom-ingest.study.updated.v2", False),
    ("*", "a.b", False),
    ("#", "a.b.c", True),
    ("#", "", True),
    ("a.#", "a", True),
    ("a.#", "a.b.c", True),
    ("a.#", "ab.c", False),
    ("#.v1", "x.y.v1", True),
    ("#.v1", "v1", True),
    ("a.#.z", "a.z", True),
    ("a.#.z", "a.b.c.z", True),
    ("a.#.z", "a.b.c", False),
    ("a.*.z", "a.z", False),
    ("a.b", "a.b.c", False),
])
def test_topic_patterns_match_as_amqp_does(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def test_retry_delays_grow_exponentially() -> None:
    policy = RetryPolicy(attempts=4, base_delay=0.5, factor=2)
    assert [policy.delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
