"""Masks after segmentation: the resumable store, composition, export."""

from masktrack.masks.store import MaskStore, SessionManifest, SessionStore

__all__ = ["MaskStore", "SessionManifest", "SessionStore"]
