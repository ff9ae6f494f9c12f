"""A memory cgroup of our own, created as a child of this process's cgroup and always removed.

Used to put an experiment (a scenario child, a Go program) under a memory
limit, so that memory pressure and the OOM killer can be observed on the real
kernel without ever touching a cgroup or process we did not create:

* the new cgroup is always a *child of our own memory cgroup* (read from
  ``/proc/self/cgroup``), never created at the root of the hierarchy;
* only processes we hand to :meth:`MemoryCgroup.add_process` are moved in;
* ``__exit__`` removes the cgroup (retrying while the kernel finishes tearing
  down exited tasks), also after an OOM kill or a ``KeyboardInterrupt``.

Both hierarchies are supported: cgroup v1 (``memory.limit_in_bytes``,
``memory.usage_in_bytes``, ``memory.oom_control``) and cgroup v2
(``memory.max``, ``memory.current``, ``memory.events``).  FACTS 22 and E7
describe what the limit does to lazily freed pages.
"""
from __future__ import annotations

import errno
import os
import secrets
import sys
import time
from dataclasses import dataclass
from typing import Optional

from models.errors import ModelInputError

_V1_LIMIT_MAX = 9223372036854771712  # what v1 shows for "no limit" (LONG_MAX rounded to a page)


@dataclass(frozen=True)
class _Location:
    version: int          # 1 or 2
    own_dir: str          # our own memory cgroup directory in the mounted hierarchy
    mount_point: str      # where that hierarchy is mounted (its root cgroup)


def _mountinfo() -> list[tuple[str, str, str, str]]:
    """(root, mount_point, fstype, super_options) for each cgroup mount."""
    rows = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            fstype, _source, super_opts = (right.split() + ["", "", ""])[:3]
            if fstype in ("cgroup", "cgroup2"):
                rows.append((fields[3], fields[4], fstype, super_opts))
    return rows


def _join(mount_point: str, mount_root: str, cg_path: str) -> str:
    # Inside a cgroup namespace or a bind mount, the mount's root is a prefix of
    # the path /proc/self/cgroup shows; strip it so the result is really ours.
    if mount_root != "/" and (cg_path == mount_root or cg_path.startswith(mount_root + "/")):
        cg_path = cg_path[len(mount_root):]
    return os.path.join(mount_point, cg_path.lstrip("/"))


def _locate() -> _Location:
    """Find our own memory cgroup, or raise OSError saying why there is none."""
    if not sys.platform.startswith("linux"):
        raise OSError(f"memory cgroups need Linux, this is {sys.platform}")
    try:
        with open("/proc/self/cgroup") as f:
            lines = [ln.rstrip("\n").split(":", 2) for ln in f if ln.strip()]
    except OSError as exc:
        raise OSError(f"cannot read /proc/self/cgroup: {exc}") from exc
    mounts = _mountinfo()
    v1_path = next((p for _, ctrls, p in lines if "memory" in ctrls.split(",")), None)
    if v1_path is not None:
        for root, mp, fstype, opts in mounts:
            if fstype == "cgroup" and "memory" in opts.split(","):
                return _Location(1, _join(mp, root, v1_path), mp)
        raise OSError("cgroup v1 memory controller listed in /proc/self/cgroup but not mounted")
    v2_path = next((p for hid, ctrls, p in lines if hid == "0" and ctrls == ""), None)
    if v2_path is not None:
        for root, mp, fstype, _ in mounts:
            if fstype == "cgroup2":
                own = _join(mp, root, v2_path)
                try:
                    with open(os.path.join(own, "cgroup.controllers")) as f:
                        controllers = f.read().split()
                except OSError as exc:
                    raise OSError(f"cannot read {own}/cgroup.controllers: {exc}") from exc
                if "memory" not in controllers:
                    raise OSError(f"the memory controller is not enabled for our cgroup v2 {own}")
                return _Location(2, own, mp)
    raise OSError("no memory cgroup controller (neither v1 'memory' nor cgroup v2 with memory)")


def cgroup_support() -> tuple[bool, str]:
    """(True, path of our own memory cgroup) if we can create a limited child cgroup here,
    else (False, why): not Linux, not root, no memory controller, directory not writable."""
    try:
        loc = _locate()
    except OSError as exc:
        return False, str(exc)
    if os.path.realpath(loc.own_dir) == os.path.realpath(loc.mount_point):
        return False, ("this process is in the root memory cgroup; refusing to create cgroups at the "
                       "root of the hierarchy (run it inside a cgroup of its own)")
    if os.geteuid() != 0:
        return False, "creating memory cgroups needs root (effective uid is %d)" % os.geteuid()
    if not os.access(loc.own_dir, os.W_OK):
        return False, f"our memory cgroup {loc.own_dir} is not writable"
    if loc.version == 2:
        try:
            with open(os.path.join(loc.own_dir, "cgroup.subtree_control")) as f:
                if "memory" not in f.read().split():
                    # v2's "no internal processes" rule: we may not enable memory for children
                    # of a cgroup that holds processes (ours does: us), so we cannot do it for them.
                    return False, (f"cgroup v2: 'memory' is not in {loc.own_dir}/cgroup.subtree_control; "
                                   "a child cgroup would have no memory limit")
        except OSError as exc:
            return False, f"cannot read cgroup.subtree_control: {exc}"
    return True, loc.own_dir


def _read_int(path: str) -> int:
    with open(path) as f:
        text = f.read().strip()
    return _V1_LIMIT_MAX if text == "max" else int(text)


def _read_keyed(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                try:
                    out[parts[0]] = int(parts[1])
                except ValueError:
                    pass
    return out


class MemoryCgroup:
    """A memory cgroup created as a child of our own; a context manager that removes it on exit.

    >>> with MemoryCgroup(limit_bytes=64 << 20) as cg:   # doctest: +SKIP
    ...     cg.add_process(child.pid)
    ...     child.wait(); print(cg.oom_kills())
    """

    def __init__(self, limit_bytes: Optional[int] = None, prefix: str = "membook"):
        if limit_bytes is not None and (isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int)
                                        or limit_bytes <= 0):
            raise ModelInputError(f"limit_bytes must be a positive number of bytes or None, got {limit_bytes!r}")
        if not prefix or "/" in prefix or prefix.startswith("."):
            raise ModelInputError(f"prefix must be a plain directory name, got {prefix!r}")
        self._initial_limit = limit_bytes
        self._prefix = prefix
        self.path: str = ""
        self.version: int = 0
        self._parent: str = ""
        self._added: set[int] = set()

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "MemoryCgroup":
        ok, why = cgroup_support()
        if not ok:
            raise OSError(errno.EPERM, f"cannot create a memory cgroup: {why}")
        loc = _locate()
        self.version, self._parent = loc.version, loc.own_dir
        name = f"{self._prefix}-{os.getpid()}-{secrets.token_hex(4)}"
        path = os.path.join(loc.own_dir, name)
        os.mkdir(path)   # raises if it exists: never adopt someone else's cgroup
        self.path = path
        try:
            if self.version == 1:
                # Without swap accounting a v1 limit could be dodged by swapping; no swap here,
                # but keep "limit" meaning RAM + swap when the file exists and accepts it.
                self._write("memory.swappiness", "0", missing_ok=True)
            if self._initial_limit is not None:
                self.set_limit(self._initial_limit)
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._remove()

    def _write(self, name: str, value: str, missing_ok: bool = False) -> None:
        try:
            with open(os.path.join(self.path, name), "w") as f:
                f.write(value)
        except FileNotFoundError:
            if not missing_ok:
                raise
        except OSError:
            if not missing_ok:
                raise

    def _file(self, v1: str, v2: str) -> str:
        if not self.path:
            raise RuntimeError("MemoryCgroup used outside its 'with' block")
        return os.path.join(self.path, v1 if self.version == 1 else v2)

    def _remove(self, timeout: float = 10.0) -> None:
        """rmdir the cgroup; first move back any task we added that is still alive in it."""
        if not self.path:
            return
        path, self.path = self.path, ""
        if not os.path.isdir(path):
            return
        procs = os.path.join(path, "cgroup.procs")
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(procs) as f:
                    left = [int(x) for x in f.read().split()]
            except OSError:
                left = []
            for pid in left:
                if pid in self._added:   # never move a process we did not put there
                    try:
                        with open(os.path.join(self._parent, "cgroup.procs"), "w") as f:
                            f.write(str(pid))
                    except OSError:
                        pass   # it is exiting; the kernel will drop it
            try:
                os.rmdir(path)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                # EBUSY while an OOM-killed or just-reaped task is still being torn down.
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise OSError(exc.errno, f"could not remove cgroup {path}: {exc.strerror}") from exc
                time.sleep(0.02)

    # -- API ---------------------------------------------------------------------------------
    def add_process(self, pid: int) -> None:
        """Move ``pid`` (a process we started) into this cgroup.  Memory it already uses stays
        charged where it is (v1 ``move_charge_at_immigrate`` is 0; v2 never moves charges)."""
        self._added.add(int(pid))
        with open(self._file("cgroup.procs", "cgroup.procs"), "w") as f:
            f.write(str(int(pid)))

    def set_limit(self, limit_bytes: int) -> None:
        """Hard limit: above it the kernel reclaims, then OOM-kills inside this cgroup."""
        if isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int) or limit_bytes <= 0:
            raise ModelInputError(f"limit_bytes must be a positive number of bytes, got {limit_bytes!r}")
        if self.version == 1:
            # memsw (RAM+swap) must stay >= the RAM limit, so raise it first when raising and
            # lower it last when lowering; equal limits mean swap cannot stretch the budget.
            self._write("memory.memsw.limit_in_bytes", str(limit_bytes), missing_ok=True)
        with open(self._file("memory.limit_in_bytes", "memory.max"), "w") as f:
            f.write(str(limit_bytes))
        if self.version == 1:
            self._write("memory.memsw.limit_in_bytes", str(limit_bytes), missing_ok=True)
        else:
            self._write("memory.swap.max", "0", missing_ok=True)

    def limit_bytes(self) -> int:
        return _read_int(self._file("memory.limit_in_bytes", "memory.max"))

    def usage_bytes(self) -> int:
        return _read_int(self._file("memory.usage_in_bytes", "memory.current"))

    def oom_kills(self) -> int:
        """Processes the kernel's OOM killer killed in this cgroup."""
        keyed = _read_keyed(self._file("memory.oom_control", "memory.events"))
        return keyed.get("oom_kill", 0)

    def stat(self) -> dict[str, int]:
        """``memory.stat`` as a dict (v1 names such as ``total_inactive_file``; v2 ``file``...)."""
        return _read_keyed(self._file("memory.stat", "memory.stat"))

    def pids(self) -> list[int]:
        with open(self._file("cgroup.procs", "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
