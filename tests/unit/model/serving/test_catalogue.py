"""Tests for model.serving.catalogue: search rows come in chunks, equal to the full product."""

from __future__ import annotations

import numpy as np
import pytest

from model.serving.catalogue import TextCatalogue


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_similarity_rows_in_chunks_equal_the_full_product(chunk: int) -> None:
    rng = np.random.default_rng(0)
    catalogue = TextCatalogue(dim=8)
    catalogue.add([f"i{n}" for n in range(50)], rng.standard_normal((50, 8), dtype=np.float32))
    queries = rng.standard_normal((7, 8), dtype=np.float32)
    rows = list(catalogue.similarity_rows(queries, chunk=chunk))
    # Equal up to float rounding: BLAS may sum a lone row in another order.
    np.testing.assert_allclose(np.stack(rows), catalogue.similarities(queries), atol=1e-5)
