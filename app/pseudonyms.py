"""User pseudonyms: logged decisions carry a keyed hash of the user id, never the id.

HMAC-SHA256 under a secret key (``LEARNLOOP_PSEUDONYM_KEY``) rather than a plain
hash, so nobody without the key can confirm a guessed id against the log. The
same user gets the same pseudonym as long as the key stays the same.

>>> pseudonymize("alice", b"k")[:10]
'u_ec631a55'
>>> pseudonymize("alice", b"k") == pseudonymize("alice", b"k") != pseudonymize("bob", b"k")
True
"""

from __future__ import annotations

import hashlib
import hmac

from schemas.features import Context

PREFIX = "u_"


def pseudonymize(user_id: str, key: bytes) -> str:
    """``u_`` plus the hex HMAC-SHA256 of ``user_id`` under ``key``."""
    return PREFIX + hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()


def pseudonymous_context(context: Context, key: bytes) -> Context:
    """``context`` with its ``user_id`` replaced by the pseudonym (session id kept:
    outcomes are attributed by it)."""
    if context.user_id is None:
        return context
    return context.model_copy(update={"user_id": pseudonymize(context.user_id, key)})
