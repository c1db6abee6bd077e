"""Secret keys from configuration: an ``INTENTSTREAM_*`` secret, else a key file.

Shared by the pseudonym key (:mod:`streams.pipeline.pseudonyms`) and the state master key
(:mod:`streams.pipeline.crypto`). Keys never come from code (DESIGN.md privacy model). A
generated key file holds 64 hex digits (256 random bits) and is created with mode
0600, atomically, so that two processes starting together agree on one key.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from pydantic import SecretStr

from streams.errors import ConfigurationError

log = logging.getLogger(__name__)

#: Random bytes in a generated key file (written as twice as many hex digits).
GENERATED_KEY_BYTES = 32


def load_key(secret: SecretStr | None, path: Path, *, create: bool, env_name: str) -> bytes:
    """The key text from the secret if set, else from the key file.

    Args:
        secret: the configured secret (e.g. ``settings.pseudonym_key``); wins when set.
            Its text is returned as UTF-8 bytes, unchanged.
        path: the key file, read when ``secret`` is unset; surrounding whitespace is
            stripped.
        create: write a new random key file (mode 0600) when there is none.
        env_name: the environment variable that sets ``secret``, for the error message.

    Returns:
        The key as bytes, as configured; callers decode and check its format.

    Raises:
        ConfigurationError: no secret, no file, and ``create`` is false; or the file
            can be read or written by its group or others.

    Examples:
        >>> load_key(SecretStr("s3cret"), Path("/nonexistent"), create=False, env_name="X")
        b's3cret'
    """
    if secret is not None:
        return secret.get_secret_value().encode("utf-8")
    if not path.exists():
        if not create:
            raise ConfigurationError(
                f"no key: set {env_name} or create {path} (e.g. `intentstream keygen`)"
            )
        write_new_key(path)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise ConfigurationError(
            f"key file {path} is open to other users (mode "
            f"{stat.S_IMODE(path.stat().st_mode):o}); run `chmod 600 {path}`"
        )
    return path.read_bytes().strip()


def write_new_key(path: Path) -> bool:
    """Create ``path`` holding a new random hex key, mode 0600, unless it exists.

    The key is written to a private temporary file that is then hard-linked into
    place, so readers never see a partial key and a concurrent creator's key is
    never overwritten.

    Args:
        path: the key file; missing parent folders are created.

    Returns:
        True if this call created the file, False if it already existed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(GENERATED_KEY_BYTES))
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    log.warning("created a new key at %s; keep it safe and back it up", path)
    return True
