"""Build a probe binary once into a per-user cache directory.

The real-kernel probes (``glibc_probe``'s C program, ``goprobe``'s Go program) are compiled
on first use and kept under ``$XDG_CACHE_HOME/membook/<name>/`` with a hash of their sources
and toolchain in the file name, so an edited probe or another compiler gets a fresh build.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Optional


def cache_root(name: str) -> Path:
    """``$XDG_CACHE_HOME/membook/<name>`` (``~/.cache`` where XDG_CACHE_HOME is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "membook" / name


def build_once(binary: Path, command: Callable[[str], list[str]],
               failed: Callable[[str], Exception], timeout: float,
               cwd: Optional[os.PathLike] = None,
               env: Optional[Callable[[], dict]] = None) -> Path:
    """Return ``binary``, building it first with ``command(output_path)`` if it is missing.

    ``binary`` is named ``<stem>-<digest>`` inside its cache directory. A failing build
    raises ``failed(compiler stderr)``. ``env`` (called only when building) gives the
    build's environment; None means this process's.
    """
    if binary.exists():
        return binary
    cache = binary.parent
    cache.mkdir(parents=True, exist_ok=True)
    # Build to a temporary name and rename, so a concurrent run never sees half a binary.
    stem = binary.name.rsplit("-", 1)[0]
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}-", dir=cache)
    os.close(fd)
    try:
        out = subprocess.run(command(tmp), cwd=cwd, capture_output=True, text=True,
                             timeout=timeout, env=env() if env else None)
        if out.returncode != 0:
            raise failed(out.stderr)
        os.chmod(tmp, 0o755)
        os.replace(tmp, binary)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return binary
