import pytest

from exporter.redis.target import TargetError, normalize_address, parse_address, redact


@pytest.mark.parametrize(
    ("raw", "address"),
    [
        ("localhost:6379", "redis://localhost:6379"),
        ("redis://h", "redis://h:6379"),
        ("redis://u:p@h:7000/2", "redis://h:7000/2"),
        ("rediss://h:6380", "rediss://h:6380"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("redis://[::1]:6379", "redis://[::1]:6379"),
    ],
)
def test_address_is_canonical_and_credential_free(raw: str, address: str) -> None:
    assert normalize_address(raw) == address


def test_credentials_are_kept_apart() -> None:
    t = parse_address("redis://app:s%40cret@h:1/3")
    assert (t.username, t.password, t.db) == ("app", "s@cret", 3)
    assert "cret" not in repr(t)


@pytest.mark.parametrize("raw", ["", "http://h:1", "redis://u:pw@h:port", "unix://", "redis://h/x"])
def test_bad_addresses_are_refused_without_leaking(raw: str) -> None:
    with pytest.raises(TargetError) as err:
        parse_address(raw)
    assert "pw" not in str(err.value).replace("<redacted>", "")


def test_redact() -> None:
    assert redact("redis://u:pw@h:1/0") == "redis://u:<redacted>@h:1/0"
    assert redact("redis://h:1") == "redis://h:1"


def test_redact_when_the_password_holds_a_slash_or_at() -> None:
    assert redact("redis://:ab/cd@host:6379") == "redis://:<redacted>@host:6379"
    assert redact("redis://u:a@b/c@host:1/2") == "redis://u:<redacted>@host:1/2"
