"""Model stores: versioned VW models plus a manifest of the current release."""

from learnloop.modelstore.base import ModelStore
from learnloop.modelstore.memory import MemoryModelStore

__all__ = ["MemoryModelStore", "ModelStore"]
