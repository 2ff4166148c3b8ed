"""Traefik duration syntax -> float seconds."""

import msgspec
import pytest

from proxy.config.durations import Duration, DurationError, dec_hook, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("100ms", 0.1),
        ("1.5h", 5400.0),
        ("1h2m3.5s", 3723.5),
        ("2us", 2e-6),
        ("2\u00b5s", 2e-6),  # MICRO SIGN, as Go accepts
        ("2\u03bcs", 2e-6),  # GREEK SMALL LETTER MU, as Go accepts
        ("300ns", 3e-7),
        (".5s", 0.5),
        ("-5s", -5.0),
        ("+5s", 5.0),
        ("0", 0.0),
        ("-0", 0.0),
        # paerser: a bare integer is seconds.
        ("42", 42.0),
        (" 42 ", 42.0),
        # Turnout: a bare float is seconds too.
        ("1.5", 1.5),
        (42, 42.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_parses_go_durations_and_bare_seconds(text: object, seconds: float) -> None:
    parsed = parse_duration(text)
    assert isinstance(parsed, Duration)
    assert isinstance(parsed, float)
    assert parsed == pytest.approx(seconds, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("bad", ["abc", "10x", "s", "", "1s2", "--1s", "1 s", "1.2.3s", "h1"])
def test_refuses_malformed_text_with_a_clear_message(bad: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(bad)
    message = str(caught.value)
    assert repr(bad) in message
    assert "expected a number of seconds or a Go duration" in message


@pytest.mark.parametrize("bad", [True, False, None, [1], {"a": 1}])
def test_refuses_values_that_are_not_numbers_or_text(bad: object) -> None:
    with pytest.raises(DurationError, match="invalid duration"):
        parse_duration(bad)


def test_duration_error_is_a_value_error() -> None:
    assert issubclass(DurationError, ValueError)


def test_duration_is_usable_as_a_struct_field_type() -> None:
    class Timeouts(msgspec.Struct, frozen=True):
        read: Duration = Duration(60)

    decoded = msgspec.convert({"read": "1m30s"}, Timeouts, dec_hook=dec_hook)
    assert decoded.read == 90.0
    assert isinstance(decoded.read, Duration)
    assert msgspec.convert({}, Timeouts, dec_hook=dec_hook).read == 60.0

    with pytest.raises(msgspec.ValidationError, match=r"invalid duration 'soon'.*\$\.read"):
        msgspec.convert({"read": "soon"}, Timeouts, dec_hook=dec_hook)


def test_dec_hook_leaves_other_types_alone() -> None:
    with pytest.raises(NotImplementedError):
        dec_hook(complex, 1)


def test_repr_names_the_type() -> None:
    assert repr(Duration(1.5)) == "Duration(1.5)"
