"""Signed model announcements: only a holder of the deployment's master key can announce.

Anyone who can write to the models topic could otherwise make every worker serve
a version of their choosing. Each announcement carries an HMAC-SHA256 over its
other fields, under a key derived from the master key with HKDF-SHA256 (purpose
``model announcements``, the pattern of ``streams.pipeline.crypto.RecordSealer``),
and the SHA-256 of the version's ``MANIFEST.json``, which pins every file the
worker then loads. The learner and ``intentstream model publish|rollback`` sign;
every worker verifies. It is a shared key: any process holding the master key
(every worker does) can sign too.
"""

from __future__ import annotations

import dataclasses
import hmac

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from online_learning.announcement import Announcement
from online_learning.errors import BadSignature

#: HKDF purpose of the announcement signing key (distinct from every other derived key).
PURPOSE = b"model announcements"
MASTER_KEY_BYTES = 32


class AnnouncementSigner:
    """Signs and verifies announcements with a key derived from the master key.

    Args:
        master_key: the deployment's 32-byte master key.

    Raises:
        ValueError: the master key is not 32 bytes long.

    Examples:
        >>> signer = AnnouncementSigner(bytes(32))
        >>> plain = Announcement("scorer", "v2", None, "/models/v2", {}, None, 1.0, "0" * 64)
        >>> signed = signer.sign(plain)
        >>> signer.verify(signed) is None
        True
        >>> signer.verify(plain)
        Traceback (most recent call last):
        ...
        online_learning.errors.BadSignature: announcement of v2 is not signed
    """

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != MASTER_KEY_BYTES:
            raise ValueError(f"the master key must be {MASTER_KEY_BYTES} bytes")
        derive = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"intentstream " + PURPOSE)
        self._key = derive.derive(master_key)

    def sign(self, announcement: Announcement) -> Announcement:
        """``announcement`` with its signature (any old one replaced)."""
        return dataclasses.replace(announcement, signature=self._mac(announcement))

    def verify(self, announcement: Announcement) -> None:
        """Check the signature, and that the manifest it covers is named.

        Raises:
            BadSignature: unsigned, signed under another key or over other fields,
                or naming no manifest.
        """
        version = announcement.version
        if announcement.signature is None:
            raise BadSignature(f"announcement of {version} is not signed")
        if not hmac.compare_digest(announcement.signature, self._mac(announcement)):
            raise BadSignature(f"announcement of {version} has a signature that does not verify")
        if announcement.manifest is None:
            raise BadSignature(f"announcement of {version} names no manifest")

    def _mac(self, announcement: Announcement) -> str:
        body = dataclasses.replace(announcement, signature=None).to_bytes()
        return hmac.new(self._key, body, "sha256").hexdigest()
