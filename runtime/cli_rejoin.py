"""``learnloop offline rejoin`` (registered on the group in :mod:`runtime.cli_common`)."""

from __future__ import annotations
