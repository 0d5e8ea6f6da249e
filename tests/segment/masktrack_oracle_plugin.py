"""``MASKTRACK_PLUGINS=masktrack_oracle_plugin`` registers the test oracle in a subprocess."""

from masktrack_oracle import OracleBackend

from masktrack.segment.registry import register_backend

register_backend("oracle", OracleBackend)
