import base64
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest

from identity.domain.totp import (
    BACKUP_CODE_ALPHABET,
    SecretBox,
    accepted_step,
    backup_code_matches,
    hash_backup_code,
    new_backup_codes,
    new_secret,
    provisioning_uri,
    qr_png,
)

# RFC 6238 Appendix B: the ASCII key "12345678901234567890", HMAC-SHA1, 8 digits, 30-second steps.
RFC_6238_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC_6238_VECTORS = [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
                    (1234567890, "89005924"), (2000000000, "69279037"), (20000000000, "65353130")]

KEY_B32 = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # fixed, so no run can hit a chance collision
NOW = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)
STEP = int(NOW.timestamp()) // 30


def code_at(when: datetime, secret: str = KEY_B32) -> str:
    return pyotp.TOTP(secret).at(when)


@pytest.mark.parametrize(("unix_time", "code"), RFC_6238_VECTORS)
def test_the_rfc_6238_vectors_are_accepted_at_their_own_step(unix_time: int, code: str):
    when = datetime.fromtimestamp(unix_time, UTC)
    assert accepted_step(RFC_6238_SECRET, code, when, None, window=0, digits=8) == unix_time // 30
    # six digits are the same truncation modulo 10^6
    assert accepted_step(RFC_6238_SECRET, code[-6:], when, None, window=0) == unix_time // 30


def test_a_fresh_secret_has_160_bits_in_base32():
    secret = new_secret()
    assert len(secret) == 32 and len(base64.b32decode(secret)) == 20
    assert new_secret() != secret


def test_the_current_code_is_accepted_and_its_step_returned():
    assert accepted_step(KEY_B32, code_at(NOW), NOW, None) == STEP
    assert accepted_step(KEY_B32, code_at(NOW)[:3] + " " + code_at(NOW)[3:], NOW, None) == STEP


def test_the_same_code_twice_is_refused():
    step = accepted_step(KEY_B32, code_at(NOW), NOW, None)
    assert accepted_step(KEY_B32, code_at(NOW), NOW + timedelta(seconds=5), step) is None


def test_a_code_from_the_previous_window_is_accepted_once():
    previous = code_at(NOW - timedelta(seconds=30))
    step = accepted_step(KEY_B32, previous, NOW, None)
    assert step == STEP - 1
    assert accepted_step(KEY_B32, previous, NOW, step) is None
    assert accepted_step(KEY_B32, code_at(NOW), NOW, step) == STEP


def test_a_code_older_than_the_last_accepted_one_is_refused():
    assert accepted_step(KEY_B32, code_at(NOW - timedelta(seconds=30)), NOW, STEP) is None


def test_a_code_from_the_next_window_is_accepted_for_clock_skew():
    assert accepted_step(KEY_B32, code_at(NOW + timedelta(seconds=30)), NOW, STEP) == STEP + 1


@pytest.mark.parametrize("offset", [-60, 60, -3600])
def test_a_code_two_or_more_windows_away_is_refused(offset: int):
    assert accepted_step(KEY_B32, code_at(NOW + timedelta(seconds=offset)), NOW, None) is None


def test_a_wider_window_accepts_two_windows_back():
    assert accepted_step(KEY_B32, code_at(NOW - timedelta(seconds=60)), NOW, None, window=2) == STEP - 2


def test_a_wrong_code_is_refused():
    valid = {code_at(NOW + timedelta(seconds=30 * k)) for k in (-1, 0, 1)}
    wrong = next(c for c in (f"{n:06d}" for n in range(1000)) if c not in valid)
    assert accepted_step(KEY_B32, wrong, NOW, None) is None


def test_full_width_digits_count_as_the_ascii_digits_they_stand_for():
    full_width = "".join(chr(ord(c) - ord("0") + 0xFF10) for c in code_at(NOW))
    assert accepted_step(KEY_B32, full_width, NOW, None) == STEP


ARABIC_INDIC = "".join(chr(0x0660 + n) for n in range(6))


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12345a", ARABIC_INDIC, "-12345", "1" * 33])
def test_a_malformed_code_is_refused(code: str):
    assert accepted_step(KEY_B32, code, NOW, None) is None


def test_a_naive_now_or_negative_window_is_a_programming_error():
    with pytest.raises(ValueError):
        accepted_step(KEY_B32, "123456", NOW.replace(tzinfo=None), None)
    with pytest.raises(ValueError):
        accepted_step(KEY_B32, "123456", NOW, None, window=-1)


def test_the_provisioning_uri_names_issuer_account_and_secret():
    uri = urlparse(provisioning_uri(KEY_B32, "alice@example.org"))
    assert (uri.scheme, uri.netloc, uri.path) == ("otpauth", "totp", "/Telerad:alice%40example.org")
    assert parse_qs(uri.query) == {"secret": [KEY_B32], "issuer": ["Telerad"]}
    assert pyotp.parse_uri(provisioning_uri(KEY_B32, "a@b.org", issuer="Other")).issuer == "Other"


def test_the_qr_code_is_a_png_of_the_uri():
    png = qr_png(provisioning_uri(KEY_B32, "alice@example.org"))
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png[12:16] == b"IHDR"
    assert qr_png(provisioning_uri(KEY_B32, "bob@example.org")) != png


def test_backup_codes_are_ten_grouped_unambiguous_characters():
    codes = new_backup_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(re.fullmatch(f"[{BACKUP_CODE_ALPHABET}]{{5}}-[{BACKUP_CODE_ALPHABET}]{{5}}", c) for c in codes)
    assert not set("01ilo") & set(BACKUP_CODE_ALPHABET)
    assert len(new_backup_codes(3)) == 3


def test_a_backup_code_matches_its_hash_however_it_is_typed():
    code = new_backup_codes(1)[0]
    hashed = hash_backup_code(code)
    for typed in (code, code.upper(), code.replace("-", ""), f"  {code[:5]} {code[6:]} ", code.replace("-", " - ")):
        assert backup_code_matches(typed, hashed), typed


def test_a_backup_code_does_not_match_another_codes_hash():
    first, second = new_backup_codes(2)
    assert not backup_code_matches(second, hash_backup_code(first))
    assert not backup_code_matches(first[:-1], hash_backup_code(first))


def test_backup_code_hashes_are_salted():
    code = new_backup_codes(1)[0]
    one, two = hash_backup_code(code), hash_backup_code(code)
    assert one != two and backup_code_matches(code, one) and backup_code_matches(code, two)
    assert code.replace("-", "") not in one


@pytest.mark.parametrize("hashed", ["", "garbage", "pbkdf2-sha256$0$AAAA$AAAA", "md5$1$AAAA$AAAA",
                                    "pbkdf2-sha256$x$AAAA$AAAA", "pbkdf2-sha256$1$!!$AAAA", "a$b$c"])
def test_a_malformed_backup_code_hash_never_matches(hashed: str):
    assert backup_code_matches("abcde-fghjk", hashed) is False


def test_a_sealed_secret_opens_with_the_same_key_and_binding():
    box = SecretBox(SecretBox.generate_key())
    sealed = box.seal(KEY_B32)
    assert KEY_B32 not in sealed and box.seal(KEY_B32) != sealed
    assert box.open(sealed) == KEY_B32
    assert box.open(box.seal("x", bound_to="user-1"), bound_to="user-1") == "x"


def test_every_altered_byte_of_a_sealed_secret_is_detected():
    box = SecretBox(SecretBox.generate_key())
    sealed = box.seal(KEY_B32)
    raw = bytearray(base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4)))
    for i in range(len(raw)):
        tampered = raw.copy()
        tampered[i] ^= 0x01
        with pytest.raises(ValueError):
            box.open(base64.urlsafe_b64encode(bytes(tampered)).rstrip(b"=").decode())


@pytest.mark.parametrize("token", ["", "not a token!", "AQ", "A" * 40, "AQ==" + "A" * 60])
def test_garbage_does_not_open(token: str):
    with pytest.raises(ValueError):
        SecretBox(SecretBox.generate_key()).open(token)


def test_a_secret_does_not_open_under_another_key_or_binding():
    box = SecretBox(SecretBox.generate_key())
    sealed = box.seal(KEY_B32, bound_to="user-1")
    with pytest.raises(ValueError):
        SecretBox(SecretBox.generate_key()).open(sealed, bound_to="user-1")
    with pytest.raises(ValueError):
        box.open(sealed, bound_to="user-2")
    with pytest.raises(ValueError):
        box.open(sealed[:-4])


def test_a_box_needs_a_256_bit_key_and_does_not_show_it():
    with pytest.raises(ValueError):
        SecretBox(b"short")
    key = SecretBox.generate_key()
    assert len(key) == 32 and SecretBox.generate_key() != key
    assert key.hex() not in repr(SecretBox(key)) and "hidden" in repr(SecretBox(key))
