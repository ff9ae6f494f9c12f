"""The Linux kernel's side of a process's memory, page by page (numpy, vectorised over pages).

``AddressSpace`` holds named anonymous mappings of 4 KiB pages, each page in one
:class:`PageState`; ``touch`` takes page faults, ``madvise`` applies MADV_DONTNEED / MADV_FREE,
and an optional memory budget makes reclaim drop lazily freed pages (or OOM-kill).  Every other
advice of ``<asm-generic/mman-common.h>`` is accepted as the kernel does (``models.kernel.advice``),
and ``pagetables=True`` charges page-table pages to the budget (``space.pagetable_pages``).  What
the model simplifies is listed in ``models/kernel/LIMITS.md``.

    >>> from models.kernel import AddressSpace
    >>> space = AddressSpace(kernel_version="6.18")
    >>> space.mmap("heap", 128 * 4096)
    >>> space.touch("heap", 0, 128 * 4096, "write").faults
    128
    >>> space.madvise("heap", 0, 64 * 4096, "MADV_FREE")
    >>> space.rss_pages("heap"), space.lazyfree_pages("heap")
    (128, 64)
"""
from models.kernel.pages import PageState
from models.kernel.profile import KernelProfile, profile_for
from models.kernel.space import MADV_DONTNEED, MADV_FREE, AddressSpace, TouchResult

__all__ = ["AddressSpace", "PageState", "KernelProfile", "profile_for", "TouchResult",
           "MADV_DONTNEED", "MADV_FREE"]
