"""Page-level models of a process's memory, checked against the real Linux kernel and Go runtime.

Where each mechanism lives:

* ``models.kernel``      -- the kernel's view: mappings (VMAs) of 4 KiB pages, page faults,
                            madvise(MADV_DONTNEED / MADV_FREE), reclaim under a memory budget,
                            kernel-version profiles.
* ``models.scenario``    -- the scenario file format, its validation, a library of scenarios and
                            ``python -m models run``.
* ``models.realkernel``  -- the same scenarios played on the machine's real kernel (child process,
                            cgroup memory limit, /proc/self/smaps, getrusage).
* ``models.malloc``      -- a glibc-like malloc/free on top of the kernel model.
* ``models.goruntime``   -- the Go runtime's heap, GC and scavenger by Go version.
* ``models.viz``         -- figures and explorables for the book (plotly, ipywidgets); the
                            simulation packages above never import it.
"""
