"""Promptable video segmentation in isolated sessions.

``base`` holds the backend interface, ``registry`` loads backends by name
(lazily: no model library is imported until a backend is asked for),
``runner`` drives one session through bidirectional propagation into the
mask store.  One module per backend: ``classic`` (weight-free default),
``sam2``, ``sam3``.
"""
