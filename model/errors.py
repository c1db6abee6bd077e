"""Exceptions raised by the model package on purpose.

A run asked of data that cannot give it (a DP vocabulary that keeps no item at
its epsilon) is the user's to fix, not a bug: the command line shows it as one
line with the option to change.
"""

from __future__ import annotations


class ModelError(Exception):
    """Base class of every error the model package raises on purpose."""


class TrainingDataError(ModelError, ValueError):
    """The data cannot train the run as configured; the message names the option to change."""
