"""The registry's error, apart from fleetpy.registry.base (which re-exports it) so that
fleetctl's API client can catch it without loading the Registry protocol and its types."""

from __future__ import annotations


class RegistryError(Exception):
    """The registry could not do what was asked (etcd unreachable, timeout...).

    The message names the cause and, for connection problems, the endpoints tried.
    """
