"""One root error and a few meaningful kinds; messages say what was wrong and what to do."""

from __future__ import annotations


class LearnloopError(Exception):
    """Root of every error learnloop raises on purpose."""


class InvalidInput(LearnloopError):
    """The caller sent something we refuse (HTTP 422/400)."""


class NotFound(LearnloopError):
    """A named thing (decision point, decision, model) does not exist (HTTP 404)."""


class Conflict(LearnloopError):
    """The request contradicts what is already recorded (HTTP 409)."""


class Unavailable(LearnloopError):
    """A backend (event log, Kafka, Redis) cannot be reached or is shutting down (HTTP 503)."""


class ConfigurationError(LearnloopError):
    """Settings or a config file are invalid; raised at start-up."""
