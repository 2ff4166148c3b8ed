"""The fast tokenizer is only a shortcut: wherever it answers, it agrees with the full one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.rules.parser import RuleError, _tokenize, _tokenize_fast

PIECES = st.sampled_from(
    [
        "Host",
        "PathPrefix",
        "Header",
        "(",
        ")",
        ",",
        "!",
        "&&",
        "||",
        "&",
        "|",
        " ",
        "\n",
        "\r",
        "`",
        "`a.example.com`",
        "`/api`",
        '"x"',
        "x1",
        "_y",
        "é",
        "1",
    ]
)


@given(st.lists(PIECES, max_size=12).map("".join))
@settings(max_examples=2000, deadline=None)
def test_fast_tokens_equal_full_tokens(text: str) -> None:
    fast = _tokenize_fast(text)
    if fast is None:
        return
    try:
        full = list(_tokenize(text))
    except RuleError as error:  # pragma: no cover - a disagreement
        raise AssertionError(f"fast path accepted {text!r}, full tokenizer: {error}") from None
    assert fast == full


def test_common_rules_take_the_fast_path() -> None:
    assert _tokenize_fast("Host(`a.example.com`) && PathPrefix(`/api`)") is not None
    assert _tokenize_fast('Host("a.example.com")') is None  # double quotes: full tokenizer
