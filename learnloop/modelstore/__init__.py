"""Model stores: versioned VW models plus a manifest of the current release."""

from learnloop.modelstore.base import ModelStore
from learnloop.modelstore.local import LocalModelStore
from learnloop.modelstore.memory import MemoryModelStore

__all__ = ["LocalModelStore", "MemoryModelStore", "ModelStore"]
