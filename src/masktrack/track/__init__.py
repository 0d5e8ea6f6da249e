"""Per-instance 3D point tracking: queries, trackers (one module each), tracks."""
