"""Exceptions raised by the streams package.

Bad *records* never raise: they go to the dead-letter topic. These are for
infrastructure and configuration problems, which stop the process so that
its supervisor can restart it.
"""


class IntentstreamError(Exception):
    """Base class of every error intentstream raises on purpose."""


class ConfigurationError(IntentstreamError):
    """The settings are incomplete or inconsistent (e.g. no pseudonym key)."""


class BrokerError(IntentstreamError):
    """A local broker could not be installed, started, reached or stopped."""


class WorkerError(IntentstreamError):
    """A worker process exited or did not become ready."""


class StateDecryptionError(IntentstreamError):
    """Encrypted user state or a wrapped data key did not open (``streams.pipeline.crypto``).

    Wrong master key, wrong data key or user, a tampered or truncated record, or
    an unknown format version: AES-GCM does not say which. After crypto-shredding
    this is the expected outcome for the erased user's old records.
    """
