"""Announcements are signed under a key derived from the master key; anything else fails."""

from __future__ import annotations

import dataclasses

import pytest

from online_learning.announcement import Announcement, PrivacySpend
from online_learning.errors import BadSignature
from online_learning.signing import AnnouncementSigner

SIGNER = AnnouncementSigner(bytes(range(32)))
ANNOUNCEMENT = Announcement(
    name="intentstream-scorer",
    version="seq-2026-11-28T030000Z-ab12cd34",
    parent="seq-2026-11-28T020000Z-1f2e3d4c",
    uri="/models/seq-2026-11-28T030000Z-ab12cd34",
    metrics={"MRR@20": 18.1},
    privacy=PrivacySpend(epsilon=0.93, delta=1e-5, accountant="rdp"),
    created_at=1_764_298_800.0,
    manifest="ab" * 32,
)


def test_a_signed_announcement_verifies_after_a_round_trip_through_its_bytes() -> None:
    signed = SIGNER.sign(ANNOUNCEMENT)
    assert (
        signed.signature is not None
        and signed.signature
        != SIGNER.sign(dataclasses.replace(ANNOUNCEMENT, version="v9")).signature
    )
    SIGNER.verify(Announcement.from_bytes(signed.to_bytes()))


@pytest.mark.parametrize(
    "change",
    [
        {"version": "seq-other"},
        {"parent": None},
        {"uri": "/elsewhere"},
        {"metrics": {"MRR@20": 99.0}},
        {"privacy": None},
        {"created_at": 1.0},
        {"manifest": "cd" * 32},
        {"name": "another-model"},
    ],
)
def test_changing_any_field_breaks_the_signature(change: dict[str, object]) -> None:
    forged = dataclasses.replace(SIGNER.sign(ANNOUNCEMENT), **change)  # type: ignore[arg-type]
    with pytest.raises(BadSignature, match="does not verify"):
        SIGNER.verify(forged)


def test_unsigned_other_key_and_no_manifest_are_refused() -> None:
    with pytest.raises(BadSignature, match="not signed"):
        SIGNER.verify(ANNOUNCEMENT)
    with pytest.raises(BadSignature, match="does not verify"):
        SIGNER.verify(AnnouncementSigner(bytes(32)).sign(ANNOUNCEMENT))
    with pytest.raises(BadSignature, match="no manifest"):
        SIGNER.verify(SIGNER.sign(dataclasses.replace(ANNOUNCEMENT, manifest=None)))
    with pytest.raises(ValueError):
        AnnouncementSigner(b"short")
