"""A glibc-like ``malloc``/``free`` (main arena, 64-bit) that drives the page model.

The allocator keeps glibc's chunk bookkeeping in plain Python (allocations are
few) and sends every effect on memory through a :class:`models.kernel.AddressSpace`,
so RSS and page faults come from the one kernel model:

* the ``brk`` heap is the region ``"heap"``, grown and shrunk with
  ``AddressSpace.resize`` (``sbrk``); offsets in it are bytes from the initial
  program break, which is page aligned on Linux;
* a request served by ``mmap`` gets a region of its own, ``"mmap:<n>"``,
  unmapped by ``free`` (FACTS 36);
* ``malloc_trim`` releases whole free pages with ``MADV_DONTNEED`` (FACTS 39);
  nothing here ever uses ``MADV_FREE`` (FACTS 40, misconception 9);
* every write glibc itself makes (chunk headers, free-list links, the
  tcache) is a ``touch(..., "write")`` of those bytes, and ``malloc(write=True)``
  writes the whole block afterwards, as the program would.

Constants and rules are those of glibc 2.36 (the machine's glibc; the
development tree cited in FACTS §E agrees on all of them except where
``LIMITS.md`` says otherwise):

* chunk = 8-byte size header + payload, 16-byte aligned, at least 32 bytes
  (``request2size``); an mmapped chunk is ``ALIGN_UP(nb + 8, 4096)`` bytes;
* the first ``malloc`` allocates the 0x290-byte tcache first (``tcache_init``);
* the heap grows by ``ALIGN_UP(nb + M_TOP_PAD + 32 - top, 4096)`` bytes;
* a request of at least ``M_MMAP_THRESHOLD`` bytes (FACTS 32) that neither a
  free chunk nor the top chunk can serve is mmapped;
* freeing an mmapped chunk above the threshold and below 32 MiB raises the
  threshold to its size and the trim threshold to twice that, unless ``mallopt``
  has set any of the four parameters (FACTS 33, 34);
* a free that leaves a merged chunk of at least 64 KiB, with a top chunk of at
  least ``M_TRIM_THRESHOLD``, shrinks the heap with ``sbrk(-extra)`` keeping
  ``M_TOP_PAD`` (FACTS 35, 37);
* chunks of at most 1040 bytes go to the tcache (7 per size), chunks of at most
  128 bytes then to fastbins; neither coalesces until ``malloc_consolidate``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

from models.errors import ModelInputError
from models.malloc.sequence import (
    MAX_PARAM, MAX_REQUEST, MALLOPT_PARAMS, Free, Malloc, MallocTrim, Mallopt, Sequence,
)
from models.units import PAGE_SIZE

SIZE_SZ = 8
MALLOC_ALIGNMENT = 16
MINSIZE = 32
#: sizeof(struct malloc_chunk): the bytes of a free chunk malloc_trim never releases.
MALLOC_CHUNK_STRUCT = 48
DEFAULT_MMAP_THRESHOLD = 128 * 1024        # FACTS 32
DEFAULT_MMAP_THRESHOLD_MAX = 32 << 20      # 4 MiB * sizeof(long), FACTS 34
DEFAULT_TRIM_THRESHOLD = 128 * 1024        # FACTS 35
DEFAULT_TOP_PAD = 128 * 1024
DEFAULT_MMAP_MAX = 65536
FASTBIN_CONSOLIDATION_THRESHOLD = 64 * 1024  # ATTEMPT_TRIMMING_THRESHOLD, FACTS 37
MAX_FAST = 128                             # DEFAULT_MXFAST on 64-bit, as a chunk size
SMALLBIN_LIMIT = 1024                      # MIN_LARGE_SIZE: chunks below are "small"
TCACHE_MAX_CHUNK = 1040                    # chunk size of a 1032-byte request
TCACHE_COUNT = 7
TCACHE_STRUCT_REQUEST = 0x280              # sizeof(tcache_perthread_struct)
NO_TRIM = (1 << 64) - 1                    # M_TRIM_THRESHOLD -1 as the unsigned long glibc stores
SYSCALLS = ("brk", "mmap", "munmap", "madvise")
HEAP = "heap"
UNSORTED = -1


def request2size(nbytes: int) -> int:
    """glibc's ``request2size``: the chunk size for a request of ``nbytes``."""
    if nbytes + SIZE_SZ + MALLOC_ALIGNMENT - 1 < MINSIZE:
        return MINSIZE
    return (nbytes + SIZE_SZ + MALLOC_ALIGNMENT - 1) & ~(MALLOC_ALIGNMENT - 1)


def mmapped_chunk_size(nb: int) -> int:
    """Bytes mmapped for chunk size ``nb``: one more size word, rounded to pages."""
    return _align_up(nb + SIZE_SZ, PAGE_SIZE)


def bin_index(size: int) -> int:
    """glibc's ``bin_index`` (64-bit): small bins are 16 bytes apart, large bins widen."""
    if size < SMALLBIN_LIMIT:
        return size >> 4
    for shift, base, limit in ((6, 48, 48), (9, 91, 20), (12, 110, 10), (15, 119, 4), (18, 124, 2)):
        if size >> shift <= limit:
            return base + (size >> shift)
    return 126


_U64 = 1 << 64


def _align_up(n: int, a: int) -> int:
    return -(-n // a) * a


@dataclass
class Block:
    """What a handle (id) points to."""
    id: str
    request: int
    chunk: int             # heap offset of the chunk, or 0 inside its own mapping
    size: int              # chunk size in bytes
    region: str            # "heap" or the block's own mmap region


@dataclass
class Observation:
    """The state after one operation (one row of ``python -m models malloc --json``)."""
    step: int
    op: str
    id: Optional[str]
    result: Optional[int]          # malloc_trim / mallopt return value
    placement: Optional[str]       # malloc: "heap" or "mmap"
    ptr_offset: Optional[int]      # malloc from the heap: user pointer - initial break
    chunk_size: Optional[int]
    heap_size: int                 # program break - initial break (the [heap] VSZ)
    vsz: int                       # heap_size + bytes of live mmapped chunks
    rss_pages: int                 # heap + mmapped chunks
    heap_rss_pages: int
    mmap_rss_pages: int
    faults: int                    # page faults during this operation
    syscalls: dict                 # this operation's brk/mmap/munmap/madvise counts
    mallinfo: dict                 # mallinfo2(): arena, ordblks, smblks, hblks, hblkhd, fsmblks, uordblks, fordblks, keepcost
    mmap_threshold: int
    trim_threshold: int

    def to_json(self) -> dict:
        return asdict(self)


def _default_space():
    from models.kernel import AddressSpace  # the shared page model (FACTS §A-B)
    return AddressSpace(kernel_version="6.18", swap=False, memory_limit=None)


@dataclass
class GlibcMalloc:
    """The main arena of a single-threaded glibc process.

    ``space`` is the page model the allocator's memory lives in; by default a
    fresh ``models.kernel.AddressSpace`` for Linux 6.18 without swap.
    """
    space: object = field(default_factory=_default_space)
    mmap_threshold: int = DEFAULT_MMAP_THRESHOLD
    trim_threshold: int = DEFAULT_TRIM_THRESHOLD
    top_pad: int = DEFAULT_TOP_PAD
    mmap_max: int = DEFAULT_MMAP_MAX
    no_dyn_threshold: bool = False

    def __post_init__(self):
        self.heap_size = 0                  # program break - initial break
        self.top = 0                        # heap offset of the top chunk
        self.top_size = 0
        self.free_chunks: dict[int, int] = {}    # free chunk (unsorted or binned): offset -> size
        self._free_ends: dict[int, int] = {}     # end offset -> start, to find a free predecessor
        self.unsorted: list[int] = []            # oldest first
        self.bins: dict[int, list[int]] = {}     # bin index -> offsets in glibc's fd order
        self._where: dict[int, int] = {}         # offset -> bin index or UNSORTED
        self.last_remainder: Optional[int] = None
        self._exhausted: dict[int, int] = {}     # chunk handed out whole, larger than asked
        self.tcache: dict[int, list[int]] = {}   # chunk size -> offsets (LIFO)
        self.fastbins: dict[int, list[int]] = {}  # chunk size -> offsets (LIFO)
        self.tcache_ready = False
        self._tcache_region: Optional[str] = None  # set if the tcache itself was mmapped
        self.blocks: dict[str, Block] = {}
        self.freed_ids: set[str] = set()
        self.mmapped_mem = 0
        self.n_mmaps = 0
        self._mmap_serial = 0
        self.syscalls = dict.fromkeys(SYSCALLS, 0)

    # ---------------------------------------------------------------- page effects

    def _poke(self, offset: int, length: int, region: str = HEAP) -> None:
        """glibc (or the program) writes ``length`` bytes at ``offset`` of ``region``."""
        if length > 0:
            self.space.touch(region, offset, length, access="write")

    def _sbrk(self, increment: int) -> None:
        new_size = self.heap_size + increment
        if self.heap_size == 0:
            self.space.mmap(HEAP, new_size)
        else:
            self.space.resize(HEAP, new_size)
        self.heap_size = new_size
        self.syscalls["brk"] += 1

    # ---------------------------------------------------------------- free-chunk bins
    #
    # Free chunks live in the unsorted list (newest last here, processed oldest
    # first as glibc does from its bk end) until a malloc sorts them into bins.
    # A bin is a list in glibc's fd order: small bins are FIFO, large bins are
    # sorted by decreasing size with equal sizes inserted after the first one.
    # The order decides which of several equal holes a malloc reuses.

    def _bin_insert(self, offset: int, size: int) -> None:
        """Put a free chunk in the unsorted bin: fd/bk (+ nextsize links if large), head, foot."""
        self.free_chunks[offset] = size
        self._free_ends[offset + size] = offset
        self.unsorted.append(offset)
        self._where[offset] = UNSORTED
        self._poke(offset + SIZE_SZ, (40 if size >= SMALLBIN_LIMIT else 24))
        self._poke(offset + size, SIZE_SZ)          # set_foot: the next chunk's prev_size

    def _bin_remove(self, offset: int) -> int:
        size = self.free_chunks.pop(offset)
        del self._free_ends[offset + size]
        where = self._where.pop(offset)
        (self.unsorted if where == UNSORTED else self.bins[where]).remove(offset)
        # last_remainder is left as is: glibc keeps a stale pointer, which a later
        # free chunk at the same address matches again.
        return size

    def _sort_into_bin(self, p: int) -> None:
        size = self.free_chunks[p]
        idx = bin_index(size)
        chunks = self.bins.setdefault(idx, [])
        if size < SMALLBIN_LIMIT:
            chunks.insert(0, p)
        else:
            pos = len(chunks)
            for i, q in enumerate(chunks):
                qsize = self.free_chunks[q]
                if qsize == size:
                    pos = i + 1
                    break
                if qsize < size:
                    pos = i
                    break
            chunks.insert(pos, p)
        self._where[p] = idx

    def _free_into_arena(self, p: int, size: int) -> int:
        """``_int_free`` after the tcache/fastbin checks: coalesce, bin or merge into top.

        Returns the size of the resulting (merged) chunk.
        """
        if p in self._free_ends:                    # the previous chunk is free: merge backward
            prev = self._free_ends[p]
            size += self._bin_remove(prev)
            p = prev
        nxt = p + size
        if nxt == self.top:
            self.top, self.top_size = p, self.top_size + size
            self._poke(p + SIZE_SZ, SIZE_SZ)
            return self.top_size
        if nxt in self.free_chunks:                 # the next chunk is free: merge forward
            size += self._bin_remove(nxt)
        else:
            self._poke(nxt + SIZE_SZ, SIZE_SZ)      # clear the next chunk's PREV_INUSE bit
        self._bin_insert(p, size)
        return size

    def _malloc_consolidate(self) -> None:
        """Empty the fastbins into the arena (no trimming here, as in glibc)."""
        for csize in sorted(self.fastbins):
            # glibc walks each fastbin from its head, the most recently freed chunk
            for p in reversed(self.fastbins[csize]):
                self._free_into_arena(p, csize)
        self.fastbins.clear()

    # ---------------------------------------------------------------- allocation

    def _use_chunk(self, p: int, nb: int, small_request: bool) -> int:
        """Unlink free chunk ``p`` and split ``nb`` bytes off it; the rest goes to unsorted."""
        size = self._bin_remove(p)
        if size - nb < MINSIZE:
            self._poke(p + size + SIZE_SZ, SIZE_SZ)  # set the next chunk's PREV_INUSE bit
            self._exhausted[p] = size                # the caller gets the whole chunk
            return p
        self._poke(p + SIZE_SZ, SIZE_SZ)
        self._bin_insert(p + nb, size - nb)
        if small_request:
            self.last_remainder = p + nb
        return p

    def _take_from_top(self, nb: int) -> int:
        p = self.top
        self.top, self.top_size = p + nb, self.top_size - nb
        self._poke(p + SIZE_SZ, SIZE_SZ)            # set_head(victim)
        self._poke(self.top + SIZE_SZ, SIZE_SZ)     # set_head(new top)
        return p

    def _tcache_put(self, p: int, csize: int) -> None:
        self.tcache.setdefault(csize, []).append(p)
        self._poke(p + 2 * SIZE_SZ, 2 * SIZE_SZ)    # e->next, e->key

    def _tcache_get(self, csize: int) -> int:
        p = self.tcache[csize].pop()
        self._poke(p + 3 * SIZE_SZ, SIZE_SZ)        # e->key = 0
        return p

    def _from_bins(self, nb: int) -> Optional[int]:
        """The free-list part of ``_int_malloc``: a chunk of at least ``nb`` or None."""
        small = nb < SMALLBIN_LIMIT
        idx = bin_index(nb)
        if small and self.bins.get(idx):             # exact small bin, oldest first
            p = self.bins[idx][-1]
            self._bin_remove(p)
            self._poke(p + nb + SIZE_SZ, SIZE_SZ)
            # glibc stashes the bin's other chunks of this size in the tcache
            while nb <= TCACHE_MAX_CHUNK and self.bins[idx] and len(self.tcache.get(nb, ())) < TCACHE_COUNT:
                q = self.bins[idx][-1]
                self._bin_remove(q)
                self._poke(q + nb + SIZE_SZ, SIZE_SZ)
                self._tcache_put(q, nb)
            return p
        cacheable = nb <= TCACHE_MAX_CHUNK
        return_cached = False
        while self.unsorted:
            p = self.unsorted[0]
            size = self.free_chunks[p]
            if small and len(self.unsorted) == 1 and p == self.last_remainder and size > nb + MINSIZE:
                return self._use_chunk(p, nb, True)
            if size == nb:
                self._bin_remove(p)
                self._poke(p + size + SIZE_SZ, SIZE_SZ)
                if cacheable and len(self.tcache.get(nb, ())) < TCACHE_COUNT:
                    self._tcache_put(p, nb)
                    return_cached = True
                    continue
                return p
            self.unsorted.pop(0)
            self._sort_into_bin(p)
        if return_cached:
            return self._tcache_get(nb)
        if not small and self.bins.get(idx):
            chunks = self.bins[idx]
            if self.free_chunks[chunks[0]] >= nb:
                # the smallest fitting size; not the first of its size (glibc's skip-list rule)
                fits = [i for i, q in enumerate(chunks) if self.free_chunks[q] >= nb]
                size = self.free_chunks[chunks[fits[-1]]]
                first = next(i for i, q in enumerate(chunks) if self.free_chunks[q] == size)
                pick = first + 1 if first + 1 < len(chunks) and self.free_chunks[chunks[first + 1]] == size else first
                return self._use_chunk(chunks[pick], nb, False)
        for j in sorted(k for k, v in self.bins.items() if k > idx and v):
            return self._use_chunk(self.bins[j][-1], nb, small)
        return None

    def _int_malloc(self, nb: int) -> tuple[str, int]:
        """Return ``(region, chunk offset)`` for chunk size ``nb`` (tcache already tried)."""
        if nb <= MAX_FAST and self.fastbins.get(nb):
            p = self.fastbins[nb].pop()
            while self.fastbins[nb] and len(self.tcache.get(nb, ())) < TCACHE_COUNT:
                self._tcache_put(self.fastbins[nb].pop(), nb)
            return HEAP, p
        if nb >= SMALLBIN_LIMIT and self.fastbins:
            self._malloc_consolidate()
        for attempt in (0, 1):
            p = self._from_bins(nb)
            if p is not None:
                return HEAP, p
            if self.top_size >= nb + MINSIZE:
                return HEAP, self._take_from_top(nb)
            if attempt == 0 and self.fastbins:
                self._malloc_consolidate()
                continue
            break
        return self._sysmalloc(nb)

    def _sysmalloc(self, nb: int) -> tuple[str, int]:
        if nb >= self.mmap_threshold and self.n_mmaps < self.mmap_max:
            size = mmapped_chunk_size(nb)
            self._mmap_serial += 1
            region = f"mmap:{self._mmap_serial}"
            self.space.mmap(region, size)
            self.syscalls["mmap"] += 1
            self.n_mmaps += 1
            self.mmapped_mem += size
            self._poke(0, 2 * SIZE_SZ, region)      # prev_size and size|IS_MMAPPED
            return region, 0
        grow = _align_up(nb + self.top_pad + MINSIZE - self.top_size, PAGE_SIZE)
        self._sbrk(grow)
        self.top_size += grow
        self._poke(self.top + SIZE_SZ, SIZE_SZ)     # set_head(top) over the new space
        return HEAP, self._take_from_top(nb)

    def _init_tcache(self) -> None:
        self.tcache_ready = True
        # With M_MMAP_THRESHOLD <= 0x290 even the tcache gets its own (never freed) mapping.
        region, p = self._int_malloc(request2size(TCACHE_STRUCT_REQUEST))
        self._exhausted.pop(p, None)
        if region != HEAP:
            self._tcache_region = region
        self._poke(p + 2 * SIZE_SZ, TCACHE_STRUCT_REQUEST, region)   # memset(tcache, 0, ...)

    def malloc(self, id: str, size: int, write: bool = True) -> Block:
        """``malloc(size)`` remembered under ``id``; with ``write`` the program fills it."""
        if not isinstance(id, str) or not id:
            raise ModelInputError(f"id must be a non-empty string, got {id!r}")
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_REQUEST:
            raise ModelInputError(f"size must be an int between 1 and {MAX_REQUEST} bytes (1 GiB), got {size!r}")
        if id in self.blocks:
            raise ModelInputError(f"id {id!r} is still allocated; free it first or use a new id")
        if not self.tcache_ready:
            self._init_tcache()
        nb = request2size(size)
        if nb <= TCACHE_MAX_CHUNK and self.tcache.get(nb):
            region, p = HEAP, self._tcache_get(nb)
        else:
            region, p = self._int_malloc(nb)
        csize = self._exhausted.pop(p, nb) if region == HEAP else mmapped_chunk_size(nb)
        block = Block(id, size, p, csize, region)
        self.blocks[id] = block
        self.freed_ids.discard(id)
        if write:
            self._poke(p + 2 * SIZE_SZ, size, region)
        return block

    def free(self, id: str) -> None:
        """``free()`` of the block remembered under ``id``."""
        if id not in self.blocks:
            if id in self.freed_ids:
                raise ModelInputError(f"id {id!r}: double free (already freed)")
            raise ModelInputError(f"id {id!r}: free of an id that was never allocated; live ids: {sorted(self.blocks)}")
        block = self.blocks.pop(id)
        self.freed_ids.add(id)
        if block.region != HEAP:
            # chunksize_nomask includes the IS_MMAPPED bit (2): a chunk of exactly
            # 32 MiB does not raise the threshold.
            head = block.size | 2
            if not self.no_dyn_threshold and self.mmap_threshold < head <= DEFAULT_MMAP_THRESHOLD_MAX:
                self.mmap_threshold = block.size
                self.trim_threshold = 2 * block.size
            self.space.munmap(block.region)
            self.syscalls["munmap"] += 1
            self.n_mmaps -= 1
            self.mmapped_mem -= block.size
            return
        p, size = block.chunk, block.size
        if size <= TCACHE_MAX_CHUNK and len(self.tcache.get(size, ())) < TCACHE_COUNT:
            self._tcache_put(p, size)
            return
        if size <= MAX_FAST:
            self.fastbins.setdefault(size, []).append(p)
            self._poke(p + 2 * SIZE_SZ, SIZE_SZ)       # p->fd
            return
        merged = self._free_into_arena(p, size)
        if merged >= FASTBIN_CONSOLIDATION_THRESHOLD:
            if self.fastbins:
                self._malloc_consolidate()
            if self.top_size >= self.trim_threshold:
                self._systrim(self.top_pad)

    # ---------------------------------------------------------------- giving memory back

    def _systrim(self, pad: int) -> int:
        # glibc's arithmetic, in C types: top_area is a long compared with the
        # size_t pad as unsigned, and extra is computed unsigned then stored in a
        # long.  With a 32-byte top, top_area is -1, the test passes and extra is
        # negative, so "trimming" calls sbrk(+n) and the heap grows by
        # ALIGN_UP(pad + 1, 4096) (measured on glibc 2.36, see LIMITS.md).
        top_area = self.top_size - MINSIZE - 1
        if top_area % _U64 <= pad:
            return 0
        extra = ((top_area - pad) % _U64) & ~(PAGE_SIZE - 1)
        if extra >= _U64 // 2:
            extra -= _U64
        if extra == 0:
            return 0
        self._sbrk(-extra)
        self.top_size -= extra
        self._poke(self.top + SIZE_SZ, SIZE_SZ)
        return 1

    def malloc_trim(self, pad: int = 0) -> int:
        """``malloc_trim(pad)``: MADV_DONTNEED whole free pages, then trim the top (FACTS 39)."""
        if isinstance(pad, bool) or not isinstance(pad, int) or not 0 <= pad <= MAX_PARAM:
            raise ModelInputError(f"pad must be an int between 0 and {MAX_PARAM} bytes, got {pad!r}")
        if self.heap_size == 0:
            return 0
        self._malloc_consolidate()
        result = 0
        # glibc walks the unsorted bin and the bins from the page-sized one up;
        # smaller bins hold no chunk with a whole free page.
        for p in sorted(self.free_chunks):
            size = self.free_chunks[p]
            if size <= PAGE_SIZE - 1 + MALLOC_CHUNK_STRUCT:
                continue
            start = _align_up(p + MALLOC_CHUNK_STRUCT, PAGE_SIZE)
            length = (p + size - start) & ~(PAGE_SIZE - 1)
            if length > 0:
                self.space.madvise(HEAP, start, length, "MADV_DONTNEED")
                self.syscalls["madvise"] += 1
                result = 1
        return result | self._systrim(pad)

    def mallopt(self, param: str, value: int) -> int:
        """``mallopt(param, value)`` for the four parameters of FACTS 33; returns 1 like glibc."""
        if param not in MALLOPT_PARAMS:
            raise ModelInputError(f"param must be one of {list(MALLOPT_PARAMS)}, got {param!r}")
        low = -1 if param == "M_TRIM_THRESHOLD" else 0
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_PARAM:
            raise ModelInputError(f"value for {param} must be an int between {low} and {MAX_PARAM}, got {value!r}")
        self._malloc_consolidate()              # mallopt always consolidates the fastbins first
        if param == "M_MMAP_THRESHOLD":
            # glibc 2.36 accepts any value here (no 32 MiB cap; measured, see LIMITS.md).
            self.mmap_threshold = value
        elif param == "M_TRIM_THRESHOLD":
            self.trim_threshold = NO_TRIM if value == -1 else value
        elif param == "M_TOP_PAD":
            self.top_pad = value
        else:
            self.mmap_max = value
        self.no_dyn_threshold = True
        return 1

    # ---------------------------------------------------------------- observation

    def mallinfo(self) -> dict:
        """``mallinfo2()`` of the main arena."""
        fast = [s for s, ps in self.fastbins.items() for _ in ps]
        avail = self.top_size + sum(self.free_chunks.values()) + sum(fast)
        return {
            "arena": self.heap_size,
            "ordblks": 1 + len(self.free_chunks),
            "smblks": len(fast),
            "hblks": self.n_mmaps,
            "hblkhd": self.mmapped_mem,
            "fsmblks": sum(fast),
            "uordblks": self.heap_size - avail,
            "fordblks": avail,
            "keepcost": self.top_size,
        }

    def mmap_regions(self) -> list[str]:
        regions = [b.region for b in self.blocks.values() if b.region != HEAP]
        return regions + ([self._tcache_region] if self._tcache_region else [])

    def heap_rss_pages(self) -> int:
        return int(self.space.rss_pages(HEAP)) if self.heap_size else 0

    def mmap_rss_pages(self) -> int:
        return sum(int(self.space.rss_pages(r)) for r in self.mmap_regions())


def apply(alloc: GlibcMalloc, op) -> tuple[Optional[int], Optional[Block]]:
    """Perform one sequence operation; returns (result, block for malloc)."""
    if isinstance(op, Malloc):
        return None, alloc.malloc(op.id, op.size, op.write)
    if isinstance(op, Free):
        alloc.free(op.id)
        return None, None
    if isinstance(op, MallocTrim):
        return alloc.malloc_trim(op.pad), None
    if isinstance(op, Mallopt):
        return alloc.mallopt(op.param, op.value), None
    raise ModelInputError(f"unknown operation {op!r}")


def replay(sequence, alloc: Optional[GlibcMalloc] = None) -> list[Observation]:
    """Run a :class:`Sequence` (or a list of ops) and observe after every operation."""
    ops = sequence.ops if isinstance(sequence, Sequence) else tuple(sequence)
    alloc = GlibcMalloc() if alloc is None else alloc
    rows = []
    for step, op in enumerate(ops):
        before = dict(alloc.syscalls)
        faults_before = int(alloc.space.faults)
        result, block = apply(alloc, op)
        heap_rss, mmap_rss = alloc.heap_rss_pages(), alloc.mmap_rss_pages()
        rows.append(Observation(
            step=step, op=op.op,
            id=getattr(op, "id", None) or getattr(op, "param", None),
            result=result,
            placement=None if block is None else ("heap" if block.region == HEAP else "mmap"),
            ptr_offset=None if block is None or block.region != HEAP else block.chunk + 2 * SIZE_SZ,
            chunk_size=None if block is None else block.size,
            heap_size=alloc.heap_size,
            vsz=alloc.heap_size + alloc.mmapped_mem,
            rss_pages=heap_rss + mmap_rss,
            heap_rss_pages=heap_rss,
            mmap_rss_pages=mmap_rss,
            faults=int(alloc.space.faults) - faults_before,
            syscalls={k: alloc.syscalls[k] - before[k] for k in SYSCALLS},
            mallinfo=alloc.mallinfo(),
            mmap_threshold=alloc.mmap_threshold,
            trim_threshold=alloc.trim_threshold,
        ))
    return rows
