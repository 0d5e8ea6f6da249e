"""Previews and Rerun recordings."""
