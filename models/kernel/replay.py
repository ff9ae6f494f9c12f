"""Play a :class:`~models.scenario.format.Scenario` on the page model, step by step.

The rows match the real-kernel engine's (``models.realkernel.engine``): ``rss_pages`` and
``lazyfree_pages`` count the scenario's own regions (not the pressure allocation), ``faults``
are the minor faults taken during the step, ``zero_pages`` is set for read touches, ``error`` is
None, "EINVAL", "ENOMEM" or "OOM_KILL".  Steps are numbered from 0.  After an OOM kill no
further step runs; the killed step reports 0 pages (the process and its memory are gone) --
the live ``AddressSpace`` from :func:`iter_play` still shows the pages at the moment of the kill.
"""
from __future__ import annotations

from typing import Iterator

from models.errors import KernelError, ModelInputError, OOMKill
from models.kernel.space import AddressSpace
from models.scenario.format import Madvise, Mmap, Munmap, Pressure, Scenario, StepResult, Touch


def iter_play(scenario: Scenario, *, kernel_version="6.18", swap: bool = False,
              pagetables: bool = False) -> Iterator[tuple[StepResult, AddressSpace]]:
    """Yield ``(result, space)`` after each step; ``space`` is the live model (snapshot it yourself).

    ``pagetables=True`` charges page-table pages to the budget as the kernel does
    (``AddressSpace(pagetables=...)``, KERNEL-NOTES K3); off by default so that budgets in pages
    stay exact for the explorables.
    """
    if not isinstance(scenario, Scenario):
        raise ModelInputError(f"scenario must be a models.scenario.format.Scenario, "
                              f"got {type(scenario).__name__}")
    space = AddressSpace(kernel_version=kernel_version, swap=swap, memory_limit=scenario.memory_limit,
                         pagetables=pagetables)
    for index, step in enumerate(scenario.steps):
        faults_before = space.faults
        zero_pages = None
        error = None
        try:
            if isinstance(step, Mmap):
                space.mmap(step.region, step.length, step.shared)
            elif isinstance(step, Munmap):
                space.munmap(step.region)
            elif isinstance(step, Touch):
                zero_pages = space.touch(step.region, step.offset, step.length, step.access).zero_pages
            elif isinstance(step, Madvise):
                space.madvise(step.region, step.offset, step.length, step.advice)
            elif isinstance(step, Pressure):
                space.pressure(step.length)
            else:
                raise ModelInputError(f"step {index}: unknown step type {type(step).__name__}")
        except KernelError as exc:
            error = exc.errno_name
        except OOMKill:
            error = "OOM_KILL"
        except ModelInputError as exc:
            raise ModelInputError(f"step {index} ({getattr(step, 'op', '?')}): {exc}") from None
        killed = error == "OOM_KILL"
        result = StepResult(step=index, op=step.op,
                            rss_pages=0 if killed else space.rss_pages(),
                            lazyfree_pages=0 if killed else space.lazyfree_pages(),
                            faults=space.faults - faults_before,
                            zero_pages=None if killed else zero_pages,
                            error=error)
        yield result, space
        if killed:
            return


def play(scenario: Scenario, *, kernel_version="6.18", swap: bool = False,
         pagetables: bool = False) -> list[StepResult]:
    """All steps' results (see :func:`iter_play`)."""
    return [result for result, _ in iter_play(scenario, kernel_version=kernel_version, swap=swap,
                                              pagetables=pagetables)]
