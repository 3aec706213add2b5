from exporter.bounded import BoundedNames


def test_newcomers_past_the_limit_fold_into_the_overflow_value() -> None:
    names = BoundedNames(2, "_other")
    assert [names.admit(n) for n in ("a", "b", "c", "a", "d", "b")] == [
        "a", "b", "_other", "a", "_other", "b",
    ]


def test_a_value_too_long_is_the_overflow_value_and_takes_no_place() -> None:
    names = BoundedNames(2, "_other", max_length=3)
    assert [names.admit(n) for n in ("abcd", "abc", "de", "fg")] == [
        "_other", "abc", "de", "_other",
    ]
