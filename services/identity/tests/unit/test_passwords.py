import argon2
import pytest

from identity.domain import passwords
from identity.domain.passwords import DUMMY_HASH, PasswordHasher, PasswordPolicy, verify_against_nothing

POLICY = PasswordPolicy()
CHEAP = PasswordHasher(time_cost=1, memory_cost_kib=8, parallelism=1)


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher()


def test_a_long_passphrase_is_acceptable():
    assert POLICY.violations("violet tractor sings at dawn", "alice@example.org") == []


def test_length_is_counted_in_code_points_after_nfkc():
    assert POLICY.violations("otter-maple7") == []
    assert POLICY.violations("otter-maple") == ["Use at least 12 characters."]
    assert POLICY.violations("\u6c34\u706b\u571f\u6728\u91d1\u6708\u65e5\u7a7a\u6d77\u5c71\u5ddd\u68ee") == []
    # "ﬁ" is one code point but NFKC makes it two, so the normalised form decides
    assert POLICY.violations("ﬁre-tower-3") == []


def test_an_empty_password_is_too_short_and_nothing_else():
    assert POLICY.violations("", "alice@example.org") == ["Use at least 12 characters."]


def test_a_password_over_the_maximum_is_refused():
    assert POLICY.violations("plum-" * 51 + "xy") == ["Use at most 256 characters."]
    assert POLICY.violations("plum-" * 51 + "x") == []


def test_character_classes_are_not_required_by_default_but_can_be():
    assert POLICY.violations("quiet mountain river") == []
    strict = PasswordPolicy(required_character_classes=3)
    assert strict.violations("quiet mountain river") == [
        "Mix at least 3 of: lower-case letters, upper-case letters, digits, symbols or spaces."]
    assert strict.violations("Quiet mountain river") == []
    assert strict.violations("quietmountain7!") == []


@pytest.mark.parametrize("password", ["alice.smith-is-great", "ALICESMITH-rocks-99", "me=alice.smith@example.org"])
def test_the_email_address_or_its_name_part_is_refused(password: str):
    assert "Do not use your e-mail address or its name part." in POLICY.violations(password, "Alice.Smith@Example.org")


def test_a_very_short_name_part_does_not_forbid_ordinary_words():
    assert POLICY.violations("joyful mornings here", "jo@example.org") == []
    assert PasswordPolicy(reject_email=False).violations("alice.smith-is-great", "alice.smith@example.org") == []


@pytest.mark.parametrize("password", ["123456789012", "Password1234!", "qwertyuiopasdfghjkl", "PASSWORDPASSWORD",
                                      "!!Radiology2024", "correcthorsebatterystaple"])
def test_common_passwords_are_refused_even_with_digits_and_symbols_around_them(password: str):
    assert "This is one of the most commonly used passwords; choose another." in POLICY.violations(password)


def test_the_blocklist_is_about_a_hundred_words_and_can_be_switched_off():
    assert 100 <= len(passwords.COMMON_PASSWORDS) <= 200
    assert PasswordPolicy(reject_common=False).violations("Password1234!") == []


@pytest.mark.parametrize("password", ["abababababab", "zzzzzzzzzzzzzzzz", "abcdefghijklmn", "zyxwvutsrqponm"])
def test_repeated_or_sequential_characters_are_refused(password: str):
    assert POLICY.violations(password) == ["Avoid repeated or sequential characters such as 'aaaa…' or 'abcd…'."]


def test_the_service_name_is_refused():
    assert POLICY.violations("my-TeleRad-login-24") == ["Do not use the name of this service."]


def test_messages_never_repeat_the_password():
    assert not any("secret-ish" in message for message in POLICY.violations("secret-ish", "s@x.org"))


@pytest.mark.parametrize("kwargs", [{"min_length": 0}, {"min_length": 20, "max_length": 10},
                                    {"required_character_classes": 5}])
def test_a_nonsensical_policy_is_rejected(kwargs: dict[str, int]):
    with pytest.raises(ValueError):
        PasswordPolicy(**kwargs)  # type: ignore[arg-type]


def test_a_hash_is_argon2id_with_the_documented_parameters_and_verifies(hasher: PasswordHasher):
    hashed = hasher.hash("violet tractor sings at dawn")
    assert hashed.startswith("$argon2id$v=19$m=49152,t=2,p=2$")
    assert hasher.verify(hashed, "violet tractor sings at dawn")
    assert not hasher.verify(hashed, "violet tractor sings at dusk")
    assert hasher.hash("violet tractor sings at dawn") != hashed


def test_composed_and_decomposed_accents_verify_alike():
    assert CHEAP.verify(CHEAP.hash("caf\u00e9 au lait 42"), "cafe\u0301 au lait 42")


@pytest.mark.parametrize("bad_hash", ["", "not a hash", "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ",
                                      "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
                                      "$argon2id$v=19$m=8,t=1,p=1$!!!$!!!"])
def test_a_malformed_or_foreign_hash_never_verifies_and_never_raises(bad_hash: str):
    assert CHEAP.verify(bad_hash, "anything") is False
    assert CHEAP.needs_rehash(bad_hash) is True


def test_a_hash_made_with_weaker_parameters_needs_rehash(hasher: PasswordHasher):
    assert hasher.needs_rehash(CHEAP.hash("violet tractor sings at dawn"))
    assert not hasher.needs_rehash(hasher.hash("violet tractor sings at dawn"))


def test_the_dummy_hash_is_well_formed_and_made_with_the_default_parameters(hasher: PasswordHasher):
    assert not hasher.needs_rehash(DUMMY_HASH)
    assert argon2.extract_parameters(DUMMY_HASH) == argon2.Parameters(
        type=argon2.Type.ID, version=19, salt_len=16, hash_len=32, time_cost=2, memory_cost=49152, parallelism=2)


def test_an_unknown_user_costs_a_verification_against_the_dummy_hash(monkeypatch: pytest.MonkeyPatch):
    seen: list[tuple[str, str]] = []
    real_verify = PasswordHasher.verify

    def spy(self: PasswordHasher, password_hash: str, password: str) -> bool:
        seen.append((password_hash, password))
        return real_verify(self, password_hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", spy)
    assert verify_against_nothing("guess") is False
    assert seen == [(DUMMY_HASH, "guess")]


def test_a_hasher_with_other_parameters_pays_its_own_cost_for_unknown_users(monkeypatch: pytest.MonkeyPatch):
    seen: list[str] = []
    real_verify = PasswordHasher.verify

    def spy(self: PasswordHasher, password_hash: str, password: str) -> bool:
        seen.append(password_hash)
        return real_verify(self, password_hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", spy)
    assert CHEAP.verify_against_nothing("guess") is False
    [dummy] = seen
    assert dummy != DUMMY_HASH and not CHEAP.needs_rehash(dummy)
