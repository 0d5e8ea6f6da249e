"""The ``masktrack`` command line: one module per command, loaded lazily."""
