"""Moved to :mod:`masktrack.io.instances`: the scene format (its ``instances/`` folder included)
lives in ``io``, below every stage that reads it.  This alias keeps old imports working."""

from masktrack.io.instances import (
    Color,
    Instance,
    list_instances,
    load_instance,
    remove_instance,
    save_instance,
)

__all__ = ["Color", "Instance", "list_instances", "load_instance", "remove_instance", "save_instance"]
