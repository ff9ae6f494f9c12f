"""The Go runtime's heap, GC and scavenger by Go version, on top of the kernel page model.

    >>> from models.goruntime import simulate_release
    >>> tl = simulate_release(go_version="1.12", kernel_version="6.18", liveness=0.25, heap="256MiB")
    >>> tl.last("release")["lazyfree_pages"] > 0      # MADV_FREE: RSS stays, LazyFree grows
    True

* :mod:`~models.goruntime.versions` -- what each Go release does (GoPolicy, GODEBUG);
* :mod:`~models.goruntime.heap` -- the heap in 8 KiB Go pages, the pacer's goals, runtime metadata;
* :mod:`~models.goruntime.runtime` -- GC cycles, background / periodic / growth scavenging,
  FreeOSMemory, GOMEMLIMIT;
* :mod:`~models.goruntime.cost` -- nanoseconds per fault, zeroed page and madvised page;
* :mod:`~models.goruntime.simulate` -- ``simulate_release`` (the probes/goheap experiment) and
  ``simulate_service`` (a service over time);
* :mod:`~models.goruntime.cli` -- ``python -m models go``.

What the model simplifies is in ``models/goruntime/LIMITS.md``.
"""
from models.goruntime.cost import DEFAULT_COST, CostModel
from models.goruntime.heap import DEFAULT_FOOTPRINT, GO_PAGE, Footprint, heap_goal, scavenge_goal_bytes
from models.goruntime.simulate import parse_gogc, simulate_release, simulate_service, simulate_versions
from models.goruntime.timeline import SERIES, Timeline
from models.goruntime.versions import KNOWN_VERSIONS, GoPolicy, parse_godebug, parse_go_version, policy_for

__all__ = ["simulate_release", "simulate_service", "simulate_versions", "Timeline", "SERIES", "CostModel", "DEFAULT_COST",
           "Footprint", "DEFAULT_FOOTPRINT", "GoPolicy", "policy_for", "parse_go_version", "parse_godebug",
           "parse_gogc", "heap_goal", "scavenge_goal_bytes", "KNOWN_VERSIONS", "GO_PAGE"]
