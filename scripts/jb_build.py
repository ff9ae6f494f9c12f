"""``jupyter-book`` with Sphinx's parallel reading: chapters execute concurrently.

MyST-NB executes a chapter while Sphinx *reads* it, and ``jupyter-book build`` always reads
serially (its CLI has no ``-j``).  Many chapters mostly wait (child processes, real-kernel and
Go probes), so two readers roughly halve a clean build on two cores.  Usage is that of
``jupyter-book``; ``BOOK_JOBS`` sets the number of parallel readers (default 2; 1 = serial,
e.g. for quieter timing measurements in chapters).
"""
import functools
import os
import sys

import jupyter_book.cli.main as cli
import jupyter_book.sphinx as jb_sphinx

jobs = int(os.environ.get("BOOK_JOBS", "2"))
if jobs < 1:
    sys.exit(f"BOOK_JOBS must be a whole number >= 1, got {jobs}")
# jupyter-book's `build` command imports build_sphinx from this module when it runs.
jb_sphinx.build_sphinx = functools.partial(jb_sphinx.build_sphinx, jobs=jobs)
sys.exit(cli.main())
