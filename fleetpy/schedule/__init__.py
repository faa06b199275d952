"""The pure scheduler: a cluster index and least-loaded, constraint-checked placement."""

from fleetpy.schedule.cluster import Cluster, UnitSpec
from fleetpy.schedule.decide import Decision, decide, decide_global, explain, violations

__all__ = [
    "Cluster",
    "Decision",
    "UnitSpec",
    "decide",
    "decide_global",
    "explain",
    "violations",
]
