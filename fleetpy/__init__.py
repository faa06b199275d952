"""fleetpy: CoreOS fleet re-created in Python on etcd v3."""

__version__ = "0.1.0"
