"""Page-table pages charged to a memory cgroup, measured on the real kernel and in the model.

:func:`kernel_pagetable_deltas` runs a script (see ``pagetable_child.py``) in a child process
inside a memory cgroup of our own (always removed) and reports, after each command, the change
of ``memory.kmem.usage_in_bytes`` in pages -- page-table pages are kernel memory charged to the
cgroup (docs/KERNEL-NOTES.md K3).  Freed page tables go back through RCU, so each reading
waits ``settle`` seconds.  :func:`model_pagetable_deltas` plays the same script on
``AddressSpace(pagetables=True)``.  cgroup v1 only (the kmem counter).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from models.kernel.space import AddressSpace
from models.units import PAGE_SIZE

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pagetable_child.py")


def kmem_support() -> tuple[bool, str]:
    from models.realkernel.cgroup import _locate, cgroup_support
    ok, why = cgroup_support()
    if not ok:
        return False, why
    loc = _locate()
    if loc.version != 1 or not os.path.exists(os.path.join(loc.own_dir, "memory.kmem.usage_in_bytes")):
        return False, "needs the cgroup v1 memory.kmem.usage_in_bytes counter"
    return True, ""


def kernel_pagetable_deltas(script: list[str], settle: float = 1.0) -> list[int]:
    """Change of the cgroup's kernel memory, in pages, after each command of ``script``."""
    from models.realkernel.cgroup import MemoryCgroup
    out: list[int] = []
    with MemoryCgroup(prefix="membook-pt") as cg:
        child = subprocess.Popen([sys.executable, CHILD], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        try:
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("page-table probe child did not start")
            cg.add_process(child.pid)
            path = os.path.join(cg.path, "memory.kmem.usage_in_bytes")

            def kmem() -> int:
                with open(path) as f:
                    return int(f.read()) // PAGE_SIZE
            time.sleep(settle)
            prev = kmem()
            for cmd in script:
                child.stdin.write(cmd + "\n")
                child.stdin.flush()
                reply = child.stdout.readline().strip()
                if reply != "ok":
                    raise RuntimeError(f"page-table probe: {cmd!r} -> {reply!r}")
                time.sleep(settle)
                now = kmem()
                out.append(now - prev)
                prev = now
        finally:
            child.kill()
            child.wait()
    return out


def model_pagetable_deltas(script: list[str], kernel_version: str = "6.18") -> list[int]:
    """The same script on the model: change of ``pagetable_pages`` after each command."""
    sp = AddressSpace(kernel_version=kernel_version, pagetables=True)
    out: list[int] = []
    for cmd in script:
        op, *a = cmd.split()
        n = [int(x) for x in a]
        before = sp.pagetable_pages
        if op == "map":
            sp.mmap("r", n[0] * PAGE_SIZE)
        elif op in ("read", "write"):
            sp.touch("r", n[0] * PAGE_SIZE, n[1] * PAGE_SIZE, op)
        elif op == "madv":
            step = n[3] if len(n) > 3 else n[1]
            for p in range(n[0], n[0] + n[1], step):
                sp.madvise("r", p * PAGE_SIZE, step * PAGE_SIZE, n[2])
        elif op == "unmap":
            sp.munmap("r")
        out.append(sp.pagetable_pages - before)
    return out
