import math

import pytest

from radcommon.canonical import canonical_json, content_sha256


def test_member_order_and_spacing_do_not_change_the_bytes() -> None:
    assert canonical_json({"b": 1, "a": [True, None, "é"]}) == canonical_json({"a": [True, None, "é"], "b": 1})
    assert canonical_json({"b": 1, "a": 2}) == b'{"a":2,"b":1}'
    assert canonical_json({"n": 1.0, "m": 1e21}) == b'{"m":1e+21,"n":1}'


def test_the_digest_changes_with_one_character() -> None:
    assert content_sha256({"findings": "No acute findings."}) != content_sha256({"findings": "No acute findings"})
    assert len(content_sha256({})) == 64


@pytest.mark.parametrize("bad", [{"x": math.nan}, {"x": math.inf}, {1: "non-string key"}, {"x": 2**60},
                                 {"x": object()}])
def test_what_json_cannot_hold_exactly_is_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        canonical_json(bad)
