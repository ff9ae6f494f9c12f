"""A glibc-like malloc/free (main arena, 64-bit) on top of the page model.

``models.malloc.glibc`` is the allocator, ``models.malloc.sequence`` the
operation-list format shared with the real-glibc probe
(``models.realkernel.glibc_probe``), ``models.malloc.cli`` the
``python -m models malloc`` command.  What the model leaves out: ``LIMITS.md``.
"""
from models.malloc.glibc import GlibcMalloc, Observation, replay, request2size  # noqa: F401
from models.malloc.sequence import (  # noqa: F401
    Free, Malloc, MallocTrim, Mallopt, Sequence, load_sequence, named_sequences, parse_sequence,
)
