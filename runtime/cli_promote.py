"""``learnloop offline promote`` (registered on the group in :mod:`runtime.cli_common`)."""

from __future__ import annotations
