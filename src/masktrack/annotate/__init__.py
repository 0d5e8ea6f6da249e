"""The point-annotation web app."""
