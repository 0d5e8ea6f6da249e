"""Deterministic synthetic multi-view robot scenes with exact ground truth."""
