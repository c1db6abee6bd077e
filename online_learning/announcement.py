"""Model version announcements: the records of the models topic (``shop.models``).

Key: the model name (``Settings.model_name``). Value: a JSON object, keys sorted::

    {"created_at": 1764298800.0, "metrics": {"MRR@20": 18.1, "P@20": 51.9},
     "name": "intentstream-scorer", "parent": "seq-2026-11-28T020000Z-1f2e3d4c",
     "manifest": "9f86d081...", "privacy": {"accountant": "rdp", "delta": 2e-06, "epsilon": 1.9},
     "signature": "5d41402a...",
     "uri": "/home/shop/.cache/intentstream/models/seq-2026-11-28T030000Z-ab12cd34",
     "version": "seq-2026-11-28T030000Z-ab12cd34"}

``privacy`` is null for a model that is not DP-trained (its own training, or any
version it descends from, was not private). ``manifest`` is the SHA-256 of the
version's ``MANIFEST.json`` and ``signature`` an HMAC over everything else
(:mod:`online_learning.signing`); workers refuse an announcement without them.
Readers ignore unknown keys, so fields can be added without breaking older workers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from online_learning.errors import BadAnnouncement

#: A version id is also a folder name of the store: no separators, no leading dot.
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

_FIELDS = ("name", "version", "parent", "uri", "metrics", "privacy", "created_at")
#: Optional fields, written only when set (announcements from before signing lack them).
_OPTIONAL = ("manifest", "signature")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_version_id(value: object) -> bool:
    """Whether ``value`` can name a version (and so a folder of the store).

    Examples:
        >>> is_version_id("seq-2026-11-28T030000Z-ab12cd34")
        True
        >>> is_version_id("../etc"), is_version_id(""), is_version_id(None)
        (False, False, False)
    """
    return isinstance(value, str) and _VERSION.fullmatch(value) is not None


def finite_number(value: object) -> bool:
    """Whether ``value`` is a finite int or float (a bool is not a number here).

    Examples:
        >>> finite_number(1), finite_number(0.5), finite_number(float("nan")), finite_number(True)
        (True, True, False, False)
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def parse_metrics(value: object) -> dict[str, float]:
    """Metrics as ``{name: float}``.

    Raises:
        ValueError: ``value`` is not a mapping of strings to finite numbers.

    Examples:
        >>> parse_metrics({"MRR@20": 18})
        {'MRR@20': 18.0}
    """
    if not isinstance(value, Mapping):
        raise ValueError("metrics must be an object of names to numbers")
    bad = [k for k, v in value.items() if not isinstance(k, str) or not finite_number(v)]
    if bad:
        raise ValueError(f"metrics must be finite numbers: {bad[:3]!r}")
    return {key: float(number) for key, number in value.items()}


@dataclass(frozen=True)
class PrivacySpend:
    """The differential privacy a version spent: ``(epsilon, delta)`` per privacy unit.

    Raises:
        ValueError: epsilon is negative or not finite, or delta is not in [0, 1).
    """

    epsilon: float
    delta: float
    accountant: str | None = None

    def __post_init__(self) -> None:
        if not (finite_number(self.epsilon) and self.epsilon >= 0):
            raise ValueError(f"privacy epsilon must be a finite number >= 0, got {self.epsilon!r}")
        if not (finite_number(self.delta) and 0 <= self.delta < 1):
            raise ValueError(f"privacy delta must be a number in [0, 1), got {self.delta!r}")
        if self.accountant is not None and not isinstance(self.accountant, str):
            raise ValueError(f"privacy accountant must be a string, got {self.accountant!r}")

    @classmethod
    def from_json(cls, value: object) -> PrivacySpend | None:
        """From ``None`` or a mapping with ``epsilon``, ``delta`` and maybe ``accountant``.

        Other keys are ignored.

        Raises:
            ValueError: anything else.
        """
        if value is None:
            return None
        if not isinstance(value, Mapping) or "epsilon" not in value or "delta" not in value:
            raise ValueError("privacy must be null or an object with epsilon and delta")
        return cls(value["epsilon"], value["delta"], value.get("accountant"))

    def to_json(self) -> dict[str, float | str]:
        """``{"epsilon": ..., "delta": ...}``, plus ``accountant`` when known."""
        out: dict[str, float | str] = {"epsilon": float(self.epsilon), "delta": float(self.delta)}
        if self.accountant is not None:
            out["accountant"] = self.accountant
        return out


@dataclass(frozen=True)
class Announcement:
    """A model version announcement: the value of one record on the models topic.

    Attributes:
        name: model name, also the record key (``Settings.model_name``).
        version: version id, the version's folder name in the store.
        parent: the version it was learned from, or None.
        uri: path of the version's folder in the model store.
        metrics: offline or online metrics, e.g. ``{"MRR@20": 18.1}``.
        privacy: differential privacy spent, or None for a model that is not DP-trained.
        created_at: publication time, seconds since the epoch.
        manifest: SHA-256 (hex) of the version's ``MANIFEST.json``, which pins its files.
        signature: HMAC-SHA256 (hex) of the rest (:mod:`online_learning.signing`).

    Raises:
        BadAnnouncement: a field has the wrong type or value (it is also a ValueError).

    Examples:
        >>> a = Announcement("scorer", "v2", "v1", "/models/v2", {"MRR@20": 18}, None, 1.0)
        >>> Announcement.from_bytes(a.to_bytes()) == a
        True
        >>> Announcement.from_bytes(b'{"name": "scorer", "version": "v2"}')  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        online_learning.errors.BadAnnouncement: announcement lacks parent, uri, metrics, ...
    """

    name: str
    version: str
    parent: str | None
    uri: str
    metrics: Mapping[str, float]
    privacy: PrivacySpend | None
    created_at: float
    manifest: str | None = None
    signature: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise BadAnnouncement("announcement name must be a non-empty string")
        if not is_version_id(self.version):
            raise BadAnnouncement(f"announcement version is not a version id: {self.version!r}")
        if self.parent is not None and not is_version_id(self.parent):
            raise BadAnnouncement(f"announcement parent is not a version id: {self.parent!r}")
        if not isinstance(self.uri, str) or not self.uri:
            raise BadAnnouncement("announcement uri must be a non-empty string")
        if self.privacy is not None and not isinstance(self.privacy, PrivacySpend):
            raise BadAnnouncement("announcement privacy must be a PrivacySpend or None")
        if not (finite_number(self.created_at) and self.created_at >= 0):
            raise BadAnnouncement("announcement created_at must be a finite number >= 0")
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and _SHA256.fullmatch(value)):
                raise BadAnnouncement(f"announcement {name} must be 64 lowercase hex digits")
        try:
            metrics = parse_metrics(self.metrics)
        except ValueError as exc:
            raise BadAnnouncement(f"announcement {exc}") from None
        object.__setattr__(self, "metrics", metrics)
        object.__setattr__(self, "created_at", float(self.created_at))

    @property
    def key(self) -> bytes:
        """Record key on the models topic: the model name, UTF-8."""
        return self.name.encode()

    def to_bytes(self) -> bytes:
        """The record value: a JSON object with sorted keys."""
        body = {
            "name": self.name,
            "version": self.version,
            "parent": self.parent,
            "uri": self.uri,
            "metrics": dict(self.metrics),
            "privacy": None if self.privacy is None else self.privacy.to_json(),
            "created_at": self.created_at,
        }
        body.update({name: getattr(self, name) for name in _OPTIONAL if getattr(self, name)})
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Announcement:
        """Parse and validate a record value; unknown keys are ignored.

        Args:
            data: the record value (None for a tombstone).

        Raises:
            BadAnnouncement: anything but a valid announcement; never another error.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise BadAnnouncement("announcement must be bytes")
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise BadAnnouncement(f"announcement is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadAnnouncement("announcement must be a JSON object")
        missing = [name for name in _FIELDS if name not in body]
        if missing:
            raise BadAnnouncement(f"announcement lacks {', '.join(missing)}")
        try:
            privacy = PrivacySpend.from_json(body["privacy"])
        except ValueError as exc:
            raise BadAnnouncement(f"announcement {exc}") from None
        values = {name: body[name] for name in _FIELDS if name != "privacy"}
        return cls(
            **values,
            privacy=privacy,
            manifest=body.get("manifest"),
            signature=body.get("signature"),
        )
