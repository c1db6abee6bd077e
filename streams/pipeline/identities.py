"""Stage 2 of a batch: each record's user and session pseudonyms, the whole batch at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.records import InputRecord
from streams.pipeline.validation import Rejection

#: A validated record's value, or why it is rejected.
Checked = dict[str, Any] | Rejection


def pseudonymise(
    records: Sequence[InputRecord],
    checked: Sequence[Checked],
    pseudonyms: Pseudonymizer,
    *,
    requests_topic: str,
) -> tuple[list[bytes], list[str]]:
    """Each record's user pseudonym and session pseudonym (empty where none).

    One keyed-hash call per kind for the whole batch. A rejected record gets a
    user pseudonym when it names a user, so its dead letter is sealed under their key.
    """
    raw_users = [_user_of(r, c, requests_topic) for r, c in zip(records, checked, strict=True)]
    raw_sessions = [
        c.get("session_id", "")
        for r, c in zip(records, checked, strict=True)
        if not isinstance(c, Rejection) and r.topic != requests_topic
    ]
    user_of = iter(pseudonyms.many([u for u in raw_users if u is not None]))
    session_of = iter(pseudonyms.sessions(raw_sessions))
    users: list[bytes] = []
    sessions: list[str] = []
    for record, outcome, raw_user in zip(records, checked, raw_users, strict=True):
        users.append(next(user_of).encode() if raw_user is not None else b"")
        is_event = not isinstance(outcome, Rejection) and record.topic != requests_topic
        sessions.append(next(session_of)[:16] if is_event else "")
    return users, sessions


def _user_of(record: InputRecord, checked: Checked, requests_topic: str) -> str | None:
    """The raw user id a record is about, when it can be read.

    A rejected record without a readable ``user_id`` is taken to be about the user
    its key names (keys are user ids), so its dead letter is shredded with theirs.
    """
    if isinstance(checked, Rejection):
        if checked.user_id is not None or not record.key:
            return checked.user_id
        try:
            return record.key.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if record.topic == requests_topic:
        return (record.key or b"").decode("utf-8")
    return str(checked["user_id"])
