"""The address space of one process, page by page: mmap, page faults, madvise, reclaim.

Every operation is a handful of numpy masked assignments over a slice of a mapping's page
arrays; counters (RSS, LazyFree, the memory charge) are kept up to date as pages change state,
so observations are O(number of mappings).

Behaviour, each checked on Linux 6.18 (x86-64, no swap; the probes and numbers are in
``models/kernel/LIMITS.md``):

* ``mmap`` reserves address space only; ``munmap`` drops the mapping and uncharges its pages.
* Private anonymous pages (FACTS 1-2): the first read of a page maps the shared zero page
  (1 minor fault, no RSS); the first write allocates a page (1 fault, RSS + 1); a write after a
  read faults again (copy-on-write from the zero page).  No fault-around on anonymous memory.
* Shared anonymous (shmem) pages: the first read of a page *allocates* it in the shmem object
  (1 fault per page, RSS + 1, reads zeros); a write after a read does not fault (the PTE is
  mapped writable).  After MADV_DONTNEED the object keeps its pages and data (FACTS E6): a read
  fault maps every page of the aligned 16-page (64 KiB) fault-around window that the object
  holds; write faults map one page each.  Shmem pages stay charged while unmapped.
* ``MADV_DONTNEED`` drops private pages at once (RSS and charge down, next touch faults and
  reads zeros, FACTS 6); on a shared mapping it only zaps the PTEs (FACTS E6).
* ``MADV_FREE`` (FACTS 11-14, 25-26): private anonymous only (EINVAL on a shared mapping);
  RSS and charge unchanged, pages become LAZYFREE; a write cancels the free without a fault,
  a read returns the old data without a fault and leaves the page LAZYFREE.  Before 4.5 it is
  EINVAL; on 4.5-4.11 without swap it acts as MADV_DONTNEED (FACTS 15-16), also on a shared
  mapping, since that kernel passed it through before looking at the mapping.
* madvise errors in the kernel's order: unknown advice -> EINVAL; unaligned start -> EINVAL;
  length rounded up to pages, 0 -> success with no effect; a range running past the mapping's
  end -> the advice is applied to the mapped part, then ENOMEM (the model assumes the address
  space after a region is unmapped, as the real-kernel engine arranges).
* Other advice (:mod:`models.kernel.advice`, KERNEL-NOTES K10): every value of
  ``<asm-generic/mman-common.h>`` from the release that added it; hints change no page,
  ``MADV_COLD`` clears young bits, ``MADV_PAGEOUT`` drops lazily freed pages at once,
  ``MADV_POPULATE_READ/WRITE`` fault the range in, ``MADV_REMOVE`` punches a hole in shmem.
* Page tables (``pagetables=True``; KERNEL-NOTES K3): one page-table page per 2 MiB block of a
  mapping with any PTE (a zero-page read counts), charged to the budget, not counted in RSS;
  kept through MADV_FREE and reclaim, freed by munmap and, from 6.14 (CONFIG_PT_RECLAIM), by a
  MADV_DONTNEED covering the whole block.  Off by default: budgets then count pages only.
* A memory budget (cgroup limit above baseline): when a page must be charged and the budget is
  full, reclaim drops LAZYFREE pages (see :mod:`models.kernel.reclaim` for the order); with
  nothing left to drop the process is OOM-killed (FACTS 22, E7).  With ``swap=True``, private
  anonymous pages are then written to swap, oldest first, instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Optional, Union

import numpy as np

from models.errors import KernelError, ModelInputError, OOMKill
from models.kernel.advice import ADVICE, Advice, lookup
from models.kernel.pages import (LAZYFREE, NOT_PRESENT, RECLAIMED, RESIDENT, SWAPPED, ZERO_PAGE,
                                 PageState)
from models.kernel.profile import KernelProfile, profile_for
from models.kernel.reclaim import RECLAIM_BATCH, LruList, shrink_lazyfree, swap_out
from models.kernel.vma import PTES_PER_TABLE, FIRST_PAGE_IN_TABLE, Vma, table_of
from models.units import PAGE_SIZE, pages_of

#: Linux's advice values (``<asm-generic/mman-common.h>``).  MADV_FREE is 8 in the merged kernel
#: (the 2015 v3 patch quoted in FACTS 10 proposed 5; 5 is EINVAL on 6.18, measured).
MADV_DONTNEED = 4
MADV_FREE = 8
#: Every advice name the model knows -> its value (see :mod:`models.kernel.advice`).
ADVICE_NAMES = {name: a.value for name, a in ADVICE.items()}

#: Read fault-around on shmem maps this many pages (``fault_around_bytes`` = 64 KiB, FACTS E6).
FAULT_AROUND_PAGES = 16

#: Largest single mapping the model accepts (numpy arrays of ~19 bytes per page).
MAX_MAPPING_BYTES = 64 << 30


@dataclass(frozen=True)
class TouchResult:
    """What one ``touch`` cost: minor faults, pages that read back as zeros (reads only)."""
    faults: int
    zero_pages: Optional[int]
    major_faults: int = 0


def _count(mask: np.ndarray) -> int:
    return int(np.count_nonzero(mask))


def _check_int(name: str, value, minimum: int = 0, allowed: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ModelInputError(f"{name} must be an int number of bytes{allowed or f' >= {minimum}'}, "
                              f"got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum:
        raise ModelInputError(f"{name} must be >= {minimum} bytes{allowed}, got {value}")
    return value


class AddressSpace:
    """One process's anonymous mappings, page by page, on a given kernel (profile).

    ``memory_limit`` is the budget in bytes above the process's baseline (a cgroup limit), or
    None for no limit.  See the module docstring for the behaviour and FACTS references.
    """

    def __init__(self, kernel_version: Union[str, KernelProfile] = "6.18", swap: bool = False,
                 memory_limit: Optional[int] = None, pagetables: bool = False):
        self.profile: KernelProfile = profile_for(kernel_version, swap)
        if not isinstance(pagetables, (bool, np.bool_)):
            raise ModelInputError(f"pagetables must be True or False, got {pagetables!r}")
        #: Page-table pages are charged to the budget (KERNEL-NOTES K3); False: pages only.
        self.count_pagetables = bool(pagetables)
        if memory_limit is None:
            self.budget_pages: Optional[int] = None
        else:
            memory_limit = _check_int("memory_limit", memory_limit, 0, " (or None for no limit)")
            self.budget_pages = memory_limit // PAGE_SIZE
        self._vmas: dict[str, Vma] = {}
        self._file_lru = LruList("lru_seq")   # lazily freed pages (inactive file LRU, FACTS 18)
        self._anon_lru = LruList("anon_seq")  # private anonymous pages, used with swap only
        self._seq = 0
        #: Pages charged to the budget: private RESIDENT + LAZYFREE, shmem object pages, pressure.
        self.charged_pages = 0
        #: Page-table pages charged: one per 2 MiB block of a mapping with a populated PTE
        #: (regions and pressure allocations; 0 with ``pagetables=False``).  Not part of RSS.
        self.pagetable_pages = 0
        #: Pages of the "other allocation" made by :meth:`pressure`, held to the end.
        self.pressure_pages = 0
        #: Cumulative minor faults (all touches and pressure allocations).
        self.faults = 0
        #: Cumulative major faults (swap-ins; always 0 without swap).
        self.major_faults = 0
        #: Pages reclaimed from LAZYFREE so far / written to swap so far.
        self.reclaimed_pages = 0
        self.swapped_out_pages = 0
        #: The process was OOM-killed; no further operation is possible.
        self.dead = False

    # ---------------------------------------------------------------- properties
    @property
    def kernel_version(self) -> str:
        return self.profile.version

    @property
    def swap(self) -> bool:
        return self.profile.swap

    @property
    def memory_limit(self) -> Optional[int]:
        return None if self.budget_pages is None else self.budget_pages * PAGE_SIZE

    @property
    def regions(self) -> Mapping[str, int]:
        """Region name -> length in pages (read-only)."""
        return MappingProxyType({name: vma.npages for name, vma in self._vmas.items()})

    def is_shared(self, region: str) -> bool:
        return self._vma(region).shared

    @property
    def usage_pages(self) -> int:
        """What the memcg charges: pages (``charged_pages``) plus page tables (``pagetable_pages``).
        Reclaim keeps this within the budget; the kernel's ``memory.usage_in_bytes`` above the
        baseline, less its per-CPU charge stock (KERNEL-NOTES K3)."""
        return self.charged_pages + self.pagetable_pages

    # ---------------------------------------------------------------- helpers
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _check_alive(self) -> None:
        if self.dead:
            raise ModelInputError("the process was OOM-killed at an earlier step; "
                                  "no further operation is possible (start a new AddressSpace)")

    def _vma(self, region) -> Vma:
        if not isinstance(region, str):
            raise ModelInputError(f"region must be a region name (str), got {type(region).__name__} {region!r}")
        try:
            return self._vmas[region]
        except KeyError:
            known = ", ".join(repr(n) for n in self._vmas) or "none"
            raise ModelInputError(f"unknown region {region!r}; mapped regions: {known}") from None

    def _headroom(self) -> int:
        return self.budget_pages - self.charged_pages - self.pagetable_pages

    def _make_room(self, n: int) -> int:
        """Reclaim so that ``n`` more pages fit the budget; return how many fit (<= n)."""
        if self.budget_pages is None:
            return n
        head = self._headroom()
        if n <= head:
            return n
        deficit = n - head
        want = -(-deficit // RECLAIM_BATCH) * RECLAIM_BATCH
        got = shrink_lazyfree(self._file_lru, want, self._next_seq,
                              self._to_anon if self.profile.swap else None)
        self.reclaimed_pages += got
        if got < deficit and self.profile.swap:
            rest = -(-(deficit - got) // RECLAIM_BATCH) * RECLAIM_BATCH
            out = swap_out(self._anon_lru, rest)
            self.swapped_out_pages += out
            got += out
        self.charged_pages -= got
        return min(n, head + got)

    def _to_anon(self, vma: Vma, pages: np.ndarray) -> None:
        """Pages written after MADV_FREE, found by reclaim, join the anonymous LRU (FACTS 19)."""
        seq = self._next_seq()
        vma.anon_seq[pages] = seq
        self._anon_lru.add_index(vma, seq, pages)

    def _oom(self, what: str) -> None:
        self.dead = True
        raise OOMKill(f"{what}: the memory budget of {self.budget_pages} pages is full "
                      f"({self.charged_pages} charged, {self.pressure_pages} of them pressure, "
                      f"plus {self.pagetable_pages} page-table pages) and "
                      f"nothing is left to reclaim; the process is OOM-killed")

    # ---------------------------------------------------------------- mmap / munmap / resize
    def mmap(self, region: str, length: int, shared: bool = False) -> None:
        """Map ``length`` bytes (rounded up to pages) of anonymous memory; no RSS yet."""
        self._check_alive()
        if not isinstance(region, str) or not region:
            raise ModelInputError(f"region must be a non-empty str, got {region!r}")
        if region in self._vmas:
            raise ModelInputError(f"region {region!r} is already mapped; munmap it first or pick another name")
        length = _check_int("length", length, 1, f" (1 to {MAX_MAPPING_BYTES} bytes)")
        if length > MAX_MAPPING_BYTES:
            raise ModelInputError(f"length must be 1 to {MAX_MAPPING_BYTES} bytes (64 GiB), got {length}")
        if not isinstance(shared, (bool, np.bool_)):
            raise ModelInputError(f"shared must be True or False, got {shared!r}")
        self._vmas[region] = Vma(region, pages_of(length), bool(shared))

    def munmap(self, region: str) -> None:
        """Unmap the region: its pages leave RSS and the charge (a shmem object dies with it)."""
        self._check_alive()
        vma = self._vma(region)
        del self._vmas[region]
        self.charged_pages -= vma.shm_pages if vma.shared else vma.rss
        self.pagetable_pages -= vma.pt_pages      # free_pgtables (K3)
        vma.alive = False

    def resize(self, region: str, new_length: int) -> None:
        """Grow or shrink a private region at its end, as brk/sbrk do for the heap.

        Growing adds never-touched pages; shrinking drops the tail pages (RSS and charge fall,
        as with munmap of the tail).  Shared regions cannot be resized.
        """
        self._check_alive()
        vma = self._vma(region)
        if vma.shared:
            raise ModelInputError(f"resize works on private regions (a brk heap); {region!r} is shared")
        new_length = _check_int("new_length", new_length, 0, f" (0 to {MAX_MAPPING_BYTES} bytes)")
        if new_length > MAX_MAPPING_BYTES:
            raise ModelInputError(f"new_length must be 0 to {MAX_MAPPING_BYTES} bytes, got {new_length}")
        new = pages_of(new_length)
        if new >= vma.npages:
            vma.grow(new)
            return
        st = vma.state[new:vma.npages]
        n_res, n_lazy = _count(st == RESIDENT), _count(st == LAZYFREE)
        vma.rss -= n_res + n_lazy
        vma.lazyfree -= n_lazy
        self.charged_pages -= n_res + n_lazy
        # Unmapping the tail frees the page tables of the blocks wholly past the new end.
        keep = 0 if new == 0 else -(-(new + FIRST_PAGE_IN_TABLE) // PTES_PER_TABLE)
        self._free_tables(vma, keep, vma.pt.shape[0])
        vma.npages = new

    # ---------------------------------------------------------------- touch
    def _page_range(self, vma: Vma, offset, length, op: str) -> tuple[int, int]:
        offset = _check_int("offset", offset, 0)
        length = _check_int("length", length, 0)
        size = vma.npages * PAGE_SIZE
        if offset + length > size:
            raise ModelInputError(
                f"{op} of bytes [{offset}, {offset + length}) is outside region {vma.name!r} "
                f"(offset + length must be <= its {size} bytes; a real process would segfault)")
        if length == 0:
            return 0, 0
        return offset // PAGE_SIZE, (offset + length - 1) // PAGE_SIZE + 1

    def touch(self, region: str, offset: int, length: int, access: str) -> TouchResult:
        """Read or write one byte in each page overlapping ``[offset, offset + length)``.

        Returns the minor faults taken and, for a read, how many of those pages read back as
        zeros.  Raises OOMKill if a page cannot be charged (the pages before it are touched).
        """
        self._check_alive()
        vma = self._vma(region)
        if access not in ("read", "write"):
            raise ModelInputError(f"access must be 'read' or 'write', got {access!r}")
        lo, hi = self._page_range(vma, offset, length, "touch")
        write = access == "write"
        minor, major = self._touch_pages(vma, lo, hi, write)
        zero = None if write else (hi - lo) - _count(vma.data[lo:hi])
        return TouchResult(minor, zero, major)

    def _touch_pages(self, vma: Vma, lo: int, hi: int, write: bool,
                     gup: bool = False) -> tuple[int, int]:
        """Touch pages lo..hi.  ``gup``: the kernel faults them in for MADV_POPULATE_* (get_user_pages)
        instead of the program touching them: nothing is stored, and no PTE young bit is set
        (``follow_page_pte`` marks the folio accessed instead, which reclaim does not keep a
        lazily freed page for)."""
        if hi <= lo:
            return 0, 0
        # Every touched page gets a PTE (a read of a private page maps the zero page), so every
        # 2 MiB block of the range needs its page-table page first (K3).
        self._map_tables(vma, lo, hi, f"{'write' if write else 'read'} of region {vma.name!r}")
        if vma.shared:
            return self._touch_shared(vma, lo, hi, write, gup), 0
        return self._touch_private(vma, lo, hi, write, gup)

    # ---------------------------------------------------------------- page tables
    def _charge_tables(self, n: int, what: str) -> None:
        fits = self._make_room(n)
        self.pagetable_pages += fits
        if fits < n:
            self._oom(f"{what}: page-table page")

    def _map_tables(self, vma: Vma, lo: int, hi: int, what: str) -> None:
        """Allocate (and charge) the page-table pages of pages lo..hi that have none yet.

        All of a touch's tables are charged before its pages: the kernel allocates each table
        at the first fault in its block, so the order differs by at most one table per 512
        pages, which only moves an OOM point by as much.
        """
        if not self.count_pagetables:
            return
        t0, t1 = table_of(lo), table_of(hi - 1) + 1
        missing = ~vma.pt[t0:t1]
        n = _count(missing)
        if n == 0:
            return
        self._charge_tables(n, what)
        vma.pt[t0:t1] = True
        vma.pt_pages += n

    def _free_tables(self, vma: Vma, t0: int, t1: int) -> None:
        if t1 <= t0:
            return
        n = _count(vma.pt[t0:t1])
        vma.pt[t0:t1] = False
        vma.pt_pages -= n
        self.pagetable_pages -= n

    def pagetables_of(self, region: str) -> int:
        """Page-table pages the region holds (one per 2 MiB block with a populated PTE, K3)."""
        return self._vma(region).pt_pages

    def _need(self, st: np.ndarray, write: bool) -> Optional[np.ndarray]:
        """Pages of a private range whose touch needs a new page charged (None: no page does)."""
        if write:
            return (st != RESIDENT) & (st != LAZYFREE)
        if self.profile.swap:
            return st == SWAPPED
        return None                    # a private read never allocates without swap

    def _touch_private(self, vma: Vma, lo: int, hi: int, write: bool,
                       gup: bool = False) -> tuple[int, int]:
        if self.budget_pages is None:
            return self._apply_private(vma, lo, hi, write, gup)
        minor = major = 0
        cur = lo
        window = 1024
        while cur < hi:
            # Up to the first page that does not fit, no reclaim happens: touch in bulk.
            pos = self._nth_need(vma, cur, hi, write, self._headroom())
            if pos > cur:
                mi, ma = self._apply_private(vma, cur, pos, write, gup)
                minor, major, cur = minor + mi, major + ma, pos
            if cur >= hi:
                break
            # Page ``cur`` needs reclaim.  Reclaim may drop LAZYFREE pages of this very range
            # that the touch has not reached yet (they then need a page themselves), so go on
            # only up to the next LAZYFREE page: in a stretch without one, which pages reclaim
            # takes does not depend on when within the stretch its rounds happen.
            top = min(hi, cur + window)
            lazy = vma.state[cur:top] == LAZYFREE
            end = cur + (int(np.argmax(lazy)) if lazy.any() else top - cur)
            window = max(1024, 4 * (end - cur))
            if self.profile.swap:
                stop, mi, ma = self._touch_by_rounds(vma, cur, end, write, gup)
            else:
                stop = self._fit(vma, cur, end, write)
                mi, ma = self._apply_private(vma, cur, stop, write, gup)
            minor, major = minor + mi, major + ma
            if stop < end:
                self._oom(f"{'write' if write else 'read'} of page {stop} of region {vma.name!r}")
            cur = end
        return minor, major

    def _touch_by_rounds(self, vma: Vma, lo: int, hi: int, write: bool,
                         gup: bool = False) -> tuple[int, int, int]:
        """Touch lo..hi one reclaim round at a time; returns (stop, minor, major).

        With swap, a round may write out a page of this very range, and it matters whether the
        touch had passed it already (it stays SWAPPED) or not (it is swapped back in), so the
        range is applied up to each point where the budget runs out.
        """
        minor = major = 0
        cur = lo
        while cur < hi:
            pos = self._nth_need(vma, cur, hi, write, self._headroom())
            mi, ma = self._apply_private(vma, cur, pos, write, gup)
            minor, major, cur = minor + mi, major + ma, pos
            if pos == hi:
                break
            if self._reclaim_round() == 0:
                return pos, minor, major
        return hi, minor, major

    def _nth_need(self, vma: Vma, lo: int, hi: int, write: bool, k: int) -> int:
        """Index of the (k+1)-th page in lo..hi that needs a page charged, or hi."""
        pos = lo
        step = max(256, 4 * (k + 1))
        while pos < hi:
            end = min(hi, pos + step)
            step *= 2
            need = self._need(vma.state[pos:end], write)
            c = 0 if need is None else _count(need)
            if c > k:
                return pos + int(np.flatnonzero(need)[k])
            k -= c
            pos = end
        return hi

    def _reclaim_round(self) -> int:
        """One reclaim round: up to a batch of lazily freed pages, else (swap) a batch swapped out."""
        got = shrink_lazyfree(self._file_lru, RECLAIM_BATCH, self._next_seq,
                              self._to_anon if self.profile.swap else None)
        self.reclaimed_pages += got
        if got == 0 and self.profile.swap:
            got = swap_out(self._anon_lru, RECLAIM_BATCH)
            self.swapped_out_pages += got
        self.charged_pages -= got
        return got

    def _fit(self, vma: Vma, lo: int, hi: int, write: bool) -> int:
        """Reclaim until touching pages lo..hi fits the budget; return hi, or the first page
        whose charge cannot be met (the OOM point)."""
        while True:
            need = self._need(vma.state[lo:hi], write)
            want = _count(need)
            head = self._headroom()
            if want <= head:
                return hi
            before = self.charged_pages
            self._make_room(want)
            # With swap, swap-out may have picked pages of this very range: count again.
            if self.charged_pages == before:
                return lo + int(np.flatnonzero(need)[head])

    def _apply_private(self, vma: Vma, lo: int, hi: int, write: bool,
                       gup: bool = False) -> tuple[int, int]:
        """Touch pages lo..hi of a private mapping; the charge must already fit."""
        st = vma.state[lo:hi]
        swapped = st == SWAPPED if self.profile.swap else None
        n_major = 0 if swapped is None else _count(swapped)
        if write:
            fresh = (st == NOT_PRESENT) | (st == ZERO_PAGE) | (st == RECLAIMED)
            n_minor = _count(fresh)
            n_lazy = _count(st == LAZYFREE)   # write cancels MADV_FREE, no fault (FACTS 11-13)
            alloc = n_minor + n_major
            if self.profile.swap and alloc:
                self._anon_add(vma, lo, hi, fresh if swapped is None else fresh | swapped)
            st[:] = RESIDENT
            if not gup:
                vma.data[lo:hi] = True
            vma.accessed[lo:hi] = False
            vma.rss += alloc
            vma.lazyfree -= n_lazy
            self.charged_pages += alloc
        else:
            absent = (st == NOT_PRESENT) | (st == RECLAIMED)
            n_minor = _count(absent)
            # A read of a LAZYFREE page returns the old data and sets the young bit (FACTS 13).
            if not gup:
                vma.accessed[lo:hi] |= st == LAZYFREE
            st[absent] = ZERO_PAGE
            if n_major:
                st[swapped] = RESIDENT
                self._anon_add(vma, lo, hi, swapped)
                vma.rss += n_major
                self.charged_pages += n_major
        self._count_faults(n_minor, n_major)
        return n_minor, n_major

    def _count_faults(self, minor: int, major: int) -> None:
        self.faults += minor
        self.major_faults += major

    def _anon_add(self, vma: Vma, lo: int, hi: int, mask: np.ndarray) -> None:
        seq = self._next_seq()
        vma.anon_seq[lo:hi][mask] = seq
        self._anon_lru.add_range(vma, seq, lo, hi)

    def _touch_shared(self, vma: Vma, lo: int, hi: int, write: bool, gup: bool = False) -> int:
        holes = ~vma.shm_present[lo:hi]      # pages the shmem object does not hold yet
        want = _count(holes)
        fits = self._make_room(want) if want else 0
        stop = hi
        if fits < want:
            stop = lo + int(np.flatnonzero(holes)[fits])
        faults = self._apply_shared(vma, lo, stop, write, gup) if stop > lo else 0
        if stop < hi:
            self._oom(f"{'write' if write else 'read'} of page {stop} of shared region {vma.name!r}")
        return faults

    def _apply_shared(self, vma: Vma, lo: int, hi: int, write: bool, gup: bool = False) -> int:
        st = vma.state[lo:hi]
        present = vma.shm_present[lo:hi]
        unmapped = st == NOT_PRESENT
        holes = ~present
        n_holes = _count(holes)
        if write:
            # do_shared_fault: one fault per unmapped page, no fault-around; a page mapped by an
            # earlier read is already writable (shmem does not track dirtying): no fault.
            faults = _count(unmapped)
            st[:] = RESIDENT
            present[:] = True
            if not gup:
                vma.data[lo:hi] = True
            vma.rss += faults
        else:
            faults, mapped = self._shared_read_faults(vma, lo, hi)
            vma.rss += mapped
        vma.shm_pages += n_holes
        self.charged_pages += n_holes
        self.faults += faults
        return faults

    def _shared_read_faults(self, vma: Vma, lo: int, hi: int) -> tuple[int, int]:
        """Read faults with fault-around; returns (faults, pages newly mapped).

        Per aligned 16-page window: the first unmapped page read faults and maps every page the
        shmem object holds in the window (clipped to the mapping); each hole read faults on its
        own and allocates a page.  The model takes the region start as 64 KiB aligned.
        """
        W = FAULT_AROUND_PAGES
        w0, w1 = (lo // W) * W, min(-(-hi // W) * W, vma.npages)
        n = w1 - w0
        nwin = -(-n // W)
        st = vma.state[w0:w1]
        present = vma.shm_present[w0:w1]
        unmapped = st == NOT_PRESENT
        in_range = np.zeros(n, dtype=bool)
        in_range[lo - w0:hi - w0] = True
        read_unmapped = np.zeros(nwin * W, dtype=bool)
        read_unmapped[:n] = unmapped & in_range
        pres_pad = np.zeros(nwin * W, dtype=bool)
        pres_pad[:n] = present
        U = read_unmapped.reshape(nwin, W)
        P = pres_pad.reshape(nwin, W)
        any_fault = U.any(axis=1)
        first = U.argmax(axis=1)
        first_is_present = P[np.arange(nwin), first] & any_fault
        hole_reads = read_unmapped[:n] & ~present
        faults = _count(hole_reads) + _count(first_is_present)
        to_map = (unmapped & present & np.repeat(any_fault, W)[:n]) | hole_reads
        st[to_map] = RESIDENT
        present[hole_reads] = True            # a read of a hole allocates a zeroed page
        return faults, _count(to_map)

    # ---------------------------------------------------------------- madvise
    def _decode_advice(self, advice) -> Optional[Advice]:
        """The advice, or None for one this kernel answers EINVAL to (unknown, or too new)."""
        if isinstance(advice, (bool, np.bool_)):
            raise ModelInputError(f"advice must be an MADV_* name or an int, got {advice!r}")
        if isinstance(advice, np.integer):
            advice = int(advice)
        found = lookup(advice)
        if found is None or not self.profile.knows(found.since):
            return None
        return found

    def madvise(self, region: str, offset: int, length: int, advice) -> None:
        """madvise(2) on ``[offset, offset + length)`` of the region (offset as passed: bytes).

        Every advice of ``<asm-generic/mman-common.h>`` is accepted from the release that added
        it (:mod:`models.kernel.advice`; KERNEL-NOTES K10); what changes pages:

        * ``MADV_DONTNEED`` / ``MADV_DONTNEED_LOCKED``: drop the pages (FACTS 6, E6); on 6.14+
          also the page tables of 2 MiB blocks the call empties whole (K3);
        * ``MADV_FREE``: lazily free (FACTS 11-16);
        * ``MADV_REMOVE`` (shared only, else EINVAL): punch a hole in the shmem object -- pages,
          data and charge go;
        * ``MADV_COLD``: clear the young bit, so a lazily freed page read since its free is
          reclaimed on the first pass (with swap, written pages go to the old end of the
          anonymous list);
        * ``MADV_PAGEOUT``: reclaim the range now: clean lazily freed pages are dropped (even
          young ones), pages written since MADV_FREE become normal anonymous pages; without swap
          nothing else can go, with swap private pages are written out (K6);
        * ``MADV_POPULATE_READ`` / ``_WRITE``: fault the range in like a read / write touch, one
          fault per page, under the budget like any fault;
        * ``MADV_COLLAPSE``: EINVAL -- regions are mapped ``MADV_NOHUGEPAGE`` (no THP, LIMITS 1);
        * ``MADV_WIPEONFORK`` on a shared mapping: EINVAL; every other advice is a hint with no
          effect on anything the model tracks.

        Raises KernelError("EINVAL") / KernelError("ENOMEM") as the kernel answers; on ENOMEM
        the part of the range inside the region has been advised (measured, LIMITS.md).
        """
        self._check_alive()
        vma = self._vma(region)
        offset = _check_int("offset", offset, 0)
        length = _check_int("length", length, 0)
        adv = self._decode_advice(advice)
        if adv is None:
            known = lookup(advice) if not isinstance(advice, (bool, np.bool_)) else None
            if known is not None and known.name == "MADV_FREE":
                raise KernelError("EINVAL", f"MADV_FREE does not exist before Linux 4.5 "
                                            f"(profile {self.profile.version})")
            if known is not None:
                raise KernelError("EINVAL", f"{known.name} does not exist before Linux "
                                            f"{known.since[0]}.{known.since[1]} "
                                            f"(profile {self.profile.version})")
            raise KernelError("EINVAL", f"advice {advice!r} is not an advice Linux defines "
                                        f"(<asm-generic/mman-common.h>)")
        if offset % PAGE_SIZE:
            raise KernelError("EINVAL", f"start offset {offset} is not page aligned")
        if length == 0:
            return
        first = offset // PAGE_SIZE
        last = first + pages_of(length)
        effect = adv.effect
        if effect == "free" and not self.profile.lazy_free:
            effect = "dontneed"            # 4.5-4.11 without swap: passthrough (FACTS 15)
        # Checks the kernel makes per VMA, before touching anything (also past the end).
        if effect == "free" and vma.shared:
            raise KernelError("EINVAL", f"MADV_FREE on shared mapping {vma.name!r} "
                                        f"(private anonymous memory only, FACTS 14)")
        if effect == "remove" and not vma.shared:
            raise KernelError("EINVAL", f"MADV_REMOVE on private mapping {vma.name!r} "
                                        f"(shared mappings only)")
        if effect == "wipeonfork" and vma.shared:
            raise KernelError("EINVAL", f"MADV_WIPEONFORK on shared mapping {vma.name!r} "
                                        f"(private anonymous memory only)")
        if effect == "collapse":
            raise KernelError("EINVAL", f"MADV_COLLAPSE on {vma.name!r}: regions are mapped "
                                        f"MADV_NOHUGEPAGE (the model has no transparent huge pages)")
        end = min(last, vma.npages)
        if first < end:
            if effect == "dontneed":
                self._dontneed(vma, first, end)
            elif effect == "free":
                self._free(vma, first, end)
            elif effect == "remove":
                self._remove(vma, first, end)
            elif effect == "cold":
                self._cold(vma, first, end)
            elif effect == "pageout":
                self._pageout(vma, first, end)
            elif effect in ("populate_read", "populate_write"):
                self._touch_pages(vma, first, end, effect == "populate_write", gup=True)
        if last > vma.npages:
            raise KernelError("ENOMEM", f"range [{offset}, {offset + pages_of(length) * PAGE_SIZE}) "
                                        f"runs past the end of region {vma.name!r} "
                                        f"({vma.npages * PAGE_SIZE} bytes)")

    def _dontneed(self, vma: Vma, lo: int, hi: int) -> None:
        if self.profile.pt_reclaim:
            # CONFIG_PT_RECLAIM: a PTE table the zap covered whole (2 MiB inside this call's
            # range) is empty afterwards and freed; partly covered ones stay (K3, measured).
            t0 = -(-(lo + FIRST_PAGE_IN_TABLE) // PTES_PER_TABLE)
            t1 = (hi + FIRST_PAGE_IN_TABLE) // PTES_PER_TABLE
            self._free_tables(vma, t0, t1)
        st = vma.state[lo:hi]
        if vma.shared:
            # Zap the PTEs only: the shmem object keeps pages, data and charge (FACTS E6).
            vma.rss -= _count(st == RESIDENT)
            st[:] = NOT_PRESENT
            return
        n_res, n_lazy = _count(st == RESIDENT), _count(st == LAZYFREE)
        vma.rss -= n_res + n_lazy
        vma.lazyfree -= n_lazy
        self.charged_pages -= n_res + n_lazy
        st[:] = NOT_PRESENT
        vma.data[lo:hi] = False
        vma.lru_seq[lo:hi] = 0
        vma.accessed[lo:hi] = False
        vma.anon_seq[lo:hi] = 0

    def _remove(self, vma: Vma, lo: int, hi: int) -> None:
        """MADV_REMOVE on shmem: zap the PTEs and punch a hole in the object (pages, data and
        charge go; the next read of a hole allocates a zeroed page)."""
        st = vma.state[lo:hi]
        vma.rss -= _count(st == RESIDENT)
        st[:] = NOT_PRESENT
        present = vma.shm_present[lo:hi]
        n = _count(present)
        present[:] = False
        vma.data[lo:hi] = False
        vma.shm_pages -= n
        self.charged_pages -= n

    def _cold(self, vma: Vma, lo: int, hi: int) -> None:
        """MADV_COLD: clear the young bits; ``folio_deactivate`` leaves inactive pages where
        they are, so a lazily freed page keeps its place but loses its second chance."""
        vma.accessed[lo:hi] = False
        if self.profile.swap and not vma.shared:
            on = (vma.anon_seq[lo:hi] != 0) & (vma.state[lo:hi] == RESIDENT)
            if on.any():
                idx = np.flatnonzero(on) + lo
                seq = self._next_seq()
                vma.anon_seq[idx] = seq
                self._anon_lru.add_index_front(vma, seq, idx)

    def _pageout(self, vma: Vma, lo: int, hi: int) -> None:
        """MADV_PAGEOUT: reclaim the range now (``reclaim_pages`` ignores young bits)."""
        if vma.shared:
            # try_to_unmap runs before the write-out, which fails without swap (and the model
            # never swaps shmem): the PTEs are gone, the object keeps pages, data and charge
            # (measured: Rss 256 -> 0, a re-read faults with fault-around, KERNEL-NOTES K10).
            st = vma.state[lo:hi]
            vma.rss -= _count(st == RESIDENT)
            st[:] = NOT_PRESENT
            return
        st = vma.state[lo:hi]
        lazy = st == LAZYFREE
        n = _count(lazy)
        if n:
            st[lazy] = RECLAIMED
            vma.data[lo:hi][lazy] = False
            vma.lru_seq[lo:hi][lazy] = 0
            vma.accessed[lo:hi][lazy] = False
            vma.rss -= n
            vma.lazyfree -= n
            self.charged_pages -= n
            self.reclaimed_pages += n
        # Written since MADV_FREE: try_to_unmap finds it dirty, sets it swap-backed, keeps it.
        redirtied = (st == RESIDENT) & (vma.lru_seq[lo:hi] != 0)
        if redirtied.any():
            idx = np.flatnonzero(redirtied) + lo
            vma.lru_seq[idx] = 0
            if self.profile.swap:
                self._to_anon(vma, idx)
        if self.profile.swap:
            out = (st == RESIDENT) & ~redirtied
            m = _count(out)
            if m:
                st[out] = SWAPPED
                vma.anon_seq[lo:hi][out] = 0
                vma.rss -= m
                self.charged_pages -= m
                self.swapped_out_pages += m

    def _free(self, vma: Vma, lo: int, hi: int) -> None:
        st = vma.state[lo:hi]
        resident = st == RESIDENT
        n_res = _count(resident)
        seqs = vma.lru_seq[lo:hi]
        # A page written after an earlier MADV_FREE is still on the file LRU: it keeps its place
        # (folio_mark_lazyfree acts on swap-backed pages only; measured, LIMITS.md).
        newly = resident & (seqs == 0)
        if newly.any():
            seq = self._next_seq()
            seqs[newly] = seq
            self._file_lru.add_range(vma, seq, lo, hi)
        st[resident] = LAZYFREE
        vma.accessed[lo:hi] = False          # madvise_free_pte_range clears young and dirty
        vma.anon_seq[lo:hi][resident] = 0
        vma.lazyfree += n_res
        if self.profile.swap:
            swapped = st == SWAPPED         # MADV_FREE frees the swap slot: the page reads zeros
            st[swapped] = NOT_PRESENT
            vma.data[lo:hi][swapped] = False

    # ---------------------------------------------------------------- pressure
    def pressure(self, length: int) -> int:
        """Another allocation of ``length`` bytes, written and held to the end; returns its faults.

        Raises OOMKill if the budget cannot make room (the pages charged before it stay).
        """
        self._check_alive()
        length = _check_int("length", length, 1, f" (1 to {MAX_MAPPING_BYTES} bytes)")
        if length > MAX_MAPPING_BYTES:
            raise ModelInputError(f"length must be 1 to {MAX_MAPPING_BYTES} bytes, got {length}")
        n = pages_of(length)
        if self.count_pagetables:
            # Its own mapping: one page table per 2 MiB block, all written (K3).
            self._charge_tables(table_of(n - 1) + 1, f"pressure allocation of {n} pages")
        fits = self._make_room(n)
        self.pressure_pages += fits
        self.charged_pages += fits
        self.faults += fits
        if fits < n:
            self._oom(f"pressure allocation of {n} pages (page {fits})")
        return n

    # ---------------------------------------------------------------- observations
    def _selected(self, region) -> list[Vma]:
        return list(self._vmas.values()) if region is None else [self._vma(region)]

    def rss_pages(self, region: Optional[str] = None) -> int:
        """Rss of one region, or of all regions (not the pressure allocation), in pages."""
        return sum(v.rss for v in self._selected(region))

    def lazyfree_pages(self, region: Optional[str] = None) -> int:
        """LazyFree as smaps reports it: the LAZYFREE pages from 4.12 on, 0 before (no such field,
        FACTS 23) -- the page array still holds the true state; see :meth:`count`."""
        if not self.profile.smaps_lazyfree:
            return 0
        return sum(v.lazyfree for v in self._selected(region))

    def count(self, state: PageState, region: Optional[str] = None) -> int:
        """Pages in ``state`` (true counts, whatever the kernel version reports)."""
        state = PageState(state)
        return sum(_count(v.state[:v.npages] == state) for v in self._selected(region))

    def states(self, region: str) -> np.ndarray:
        """The region's page states (read-only view; copy it to keep a snapshot)."""
        vma = self._vma(region)
        view = vma.state[:vma.npages].view()
        view.flags.writeable = False
        return view

    def data(self, region: str) -> np.ndarray:
        """Per page, whether reading it would return non-zero data (read-only view)."""
        vma = self._vma(region)
        view = vma.data[:vma.npages].view()
        view.flags.writeable = False
        return view

    def lazyfree_lru(self, region: str) -> np.ndarray:
        """Per page, whether the kernel still has it marked lazily freed (not swap-backed).

        True for LAZYFREE pages and for pages written since MADV_FREE that reclaim has not
        looked at yet: /proc/kpageflags shows both without SWAPBACKED (measured), while smaps
        ``LazyFree`` counts only the clean ones.
        """
        vma = self._vma(region)
        return vma.lru_seq[:vma.npages] != 0

    def reclaim_order(self) -> list[tuple[str, int]]:
        """(region, page) of every page on the lazyfree LRU, next to be reclaimed first."""
        return self._file_lru.on_list_pages()

    def copy(self) -> "AddressSpace":
        """An independent deep copy (arrays copied), for explorables that branch a scenario."""
        new = AddressSpace.__new__(AddressSpace)
        new.__dict__.update(self.__dict__)
        vma_map = {}
        new._vmas = {}
        for name, vma in self._vmas.items():
            twin = vma.copy()
            new._vmas[name] = twin
            vma_map[id(vma)] = twin
        new._file_lru = self._file_lru.copy(vma_map)
        new._anon_lru = self._anon_lru.copy(vma_map)
        return new

    def __repr__(self) -> str:
        regions = ", ".join(f"{n}={v.npages}p" for n, v in self._vmas.items())
        return (f"AddressSpace({self.profile.describe()}, budget={self.budget_pages} pages, "
                f"rss={self.rss_pages()}, regions: {regions or 'none'})")
