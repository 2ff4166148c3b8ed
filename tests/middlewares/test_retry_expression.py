"""oxy's retry predicate language, as buffering's retryExpression reads it."""

from __future__ import annotations

import pytest

from proxy.middlewares.retry_expression import Attempt, ExpressionError, parse


@pytest.mark.parametrize(
    ("expression", "attempt", "expected"),
    [
        ("IsNetworkError() && Attempts() < 2", Attempt("GET", 1, 502), True),
        ("IsNetworkError() && Attempts() < 2", Attempt("GET", 2, 502), False),
        ("IsNetworkError() && Attempts() < 2", Attempt("GET", 1, 504), True),
        ("IsNetworkError() && Attempts() < 2", Attempt("GET", 1, 500), False),
        ("ResponseCode() == 503 || Attempts() <= 1", Attempt("GET", 1, 200), True),
        ("ResponseCode() >= 500 && ResponseCode() != 501", Attempt("GET", 3, 501), False),
        ('RequestMethod() == "GET" && IsNetworkError()', Attempt("POST", 1, 502), False),
        (
            '(RequestMethod() == "GET" || Attempts() > 4) && IsNetworkError()',
            Attempt("PUT", 5, 502),
            True,
        ),
        # Go's precedence: && binds tighter than ||.
        ("Attempts() == 9 || Attempts() == 1 && ResponseCode() == 7", Attempt("GET", 9, 0), True),
        ("2 > Attempts()", Attempt("GET", 1, 0), True),
    ],
)
def test_evaluation(expression: str, attempt: Attempt, expected: bool) -> None:
    assert parse(expression)(attempt) is expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "empty expression"),
        ("Attempts()", "expected a comparison"),
        ("IsTimeout()", "unsupported function 'IsTimeout'"),
        ('Attempts() == "1"', "cannot compare int with str"),
        ("IsNetworkError() == 1", "cannot compare bool with int"),
        ("IsNetworkError() &&", "unexpected end of expression"),
        ("(IsNetworkError()", "unexpected end of expression"),
        ("Attempts() < 2 3", "unexpected '3'"),
        ("Attempts() ~ 2", "unexpected '~ 2'"),
    ],
)
def test_errors_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(")):
        parse(expression)
