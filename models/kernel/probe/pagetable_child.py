"""Child of :func:`models.kernel.probe.pagetables.kernel_pagetable_deltas`: one private anonymous
region placed one page into a 2 MiB block (the page model's convention, ``vma.FIRST_PAGE_IN_TABLE``)
inside a PROT_NONE reservation of its own, 4 KiB pages only; commands on stdin, "ok" after each.

    map PAGES | read FIRST N | write FIRST N | madv FIRST N ADVICE [STEP] | unmap

``madv`` with STEP makes one madvise call per STEP pages (to tell one whole-block call from many
small ones).  Uses only ctypes and numpy, so that nothing is imported after it joins the cgroup.
"""
import ctypes
import sys

import numpy as np

PAGE, BLOCK = 4096, 2 << 20
PROT_NONE, PROT_RW = 0, 3
MAP_PRIVATE_ANON, MAP_FIXED, MAP_NORESERVE = 0x22, 0x10, 0x4000
MADV_NOHUGEPAGE = 15

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def main() -> int:
    view = None
    addr = base = span = 0
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        a = [int(x) for x in args]
        if cmd == "map":
            span = a[0] * PAGE + 2 * BLOCK
            base = libc.mmap(None, span, PROT_NONE, MAP_PRIVATE_ANON | MAP_NORESERVE, -1, 0)
            addr = (base + BLOCK - 1) // BLOCK * BLOCK + PAGE
            if libc.mmap(addr, a[0] * PAGE, PROT_RW, MAP_PRIVATE_ANON | MAP_FIXED, -1, 0) != addr:
                print("error mmap", flush=True)
                return 1
            libc.madvise(addr, a[0] * PAGE, MADV_NOHUGEPAGE)
            buf = (ctypes.c_ubyte * (a[0] * PAGE)).from_address(addr)
            view = np.frombuffer(buf, dtype=np.uint8)[::PAGE]
        elif cmd == "read":
            int(view[a[0]:a[0] + a[1]].sum())
        elif cmd == "write":
            view[a[0]:a[0] + a[1]] = 1
        elif cmd == "madv":
            lo, n, advice = a[:3]
            step = a[3] if len(a) > 3 else n
            for p in range(lo, lo + n, step):
                if libc.madvise(addr + p * PAGE, step * PAGE, advice) != 0:
                    print(f"error madvise {ctypes.get_errno()}", flush=True)
                    return 1
        elif cmd == "unmap":
            view = None
            libc.munmap(base, span)
        print("ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
