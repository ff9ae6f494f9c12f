"""What releasing and re-using memory costs in time: a small linear cost model.

cost = faults x ns_per_fault + zero_pages x ns_per_zeroed_page
       + madvised pages x ns_per_madvise_page[advice] + resident re-touches x ns_per_touch

The defaults come from this machine's measurements (FACTS 9, E3):

* ``MADV_DONTNEED`` then re-touch cost about 1.2 us per 4 KiB page with one fault
  each.  E3 measured only the sum (fault + zero-fill + the write itself); the
  split 650 ns fault + 400 ns zero-fill + 150 ns write is an assumption,
  labelled as such, and only the 1.2 us sum is checked against E3.
* re-touching a ``MADV_FREE``\\d page that was not reclaimed took about 150 ns and no
  fault: that is ``ns_per_touch``, paid by any write to an already-resident page.
* the ``madvise`` call itself: about 239 ns/page for DONTNEED, 64 ns/page for FREE.

A lab that measures these on the reader's machine builds its own
``CostModel(...)`` (or :meth:`CostModel.from_measurement`) and passes it in.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from models.errors import ModelInputError


@dataclass(frozen=True)
class CostModel:
    ns_per_fault: float = 650.0         # FACTS E3: 1.2 us/page minus zero-fill and write (assumed split)
    ns_per_zeroed_page: float = 400.0   # FACTS E3 (assumed share of the 1.2 us)
    ns_per_touch: float = 150.0         # FACTS E3: re-touch of a resident (not reclaimed) MADV_FREE page
    ns_per_madvise_page: dict = field(default_factory=lambda: {"MADV_DONTNEED": 239.0, "MADV_FREE": 64.0})
    source: str = "FACTS 9 / E3 (Linux 6.18, this project's machine)"

    def __post_init__(self):
        for name in ("ns_per_fault", "ns_per_zeroed_page", "ns_per_touch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v < 1e9):
                raise ModelInputError(f"{name} must be a number of nanoseconds in [0, 1e9), got {v!r}")
        for advice in ("MADV_DONTNEED", "MADV_FREE"):
            v = self.ns_per_madvise_page.get(advice)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v < 1e9):
                raise ModelInputError(
                    f"ns_per_madvise_page[{advice!r}] must be a number of nanoseconds in [0, 1e9), got {v!r}")

    @classmethod
    def from_measurement(cls, *, dontneed_call_ns: float, dontneed_retouch_ns: float,
                         free_call_ns: float, free_retouch_ns: float,
                         zero_share: float = 1 / 3, source: str = "measured") -> "CostModel":
        """Build a cost model from the four per-page numbers a lab measures (as in E3).

        ``dontneed_retouch_ns`` (one fault + zero-fill + the write) is split into
        fault and zero-fill by ``zero_share`` (default: a third is zero-fill).
        """
        if not (0 <= zero_share <= 1):
            raise ModelInputError(f"zero_share must be in [0, 1], got {zero_share!r}")
        fault_and_zero = max(dontneed_retouch_ns - free_retouch_ns, 0.0)
        return cls(ns_per_fault=fault_and_zero * (1 - zero_share), ns_per_zeroed_page=fault_and_zero * zero_share,
                   ns_per_touch=free_retouch_ns,
                   ns_per_madvise_page={"MADV_DONTNEED": dontneed_call_ns, "MADV_FREE": free_call_ns},
                   source=source)

    def touch_ns(self, faults, zero_pages, touched_pages):
        """Time to write ``touched_pages`` pages of which ``faults`` faulted and ``zero_pages`` were zero-filled."""
        return faults * self.ns_per_fault + zero_pages * self.ns_per_zeroed_page + touched_pages * self.ns_per_touch

    def madvise_ns(self, advice: str, pages):
        return pages * self.ns_per_madvise_page[advice]


DEFAULT_COST = CostModel()
