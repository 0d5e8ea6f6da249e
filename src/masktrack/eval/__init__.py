"""Mask and track evaluation against ground truth."""
