"""The registry: the shared source of truth for models, versions, aliases and their metadata."""

from modelyard.registry.records import ModelInfo, ModelVersion
from modelyard.registry.registry import Registry

__all__ = ["ModelInfo", "ModelVersion", "Registry"]
