"""The real kernel: run the book's experiments on this machine and measure them.

Everything here runs the experiment in a *child process* (so the reader's own
interpreter is never the one that gets OOM-killed), bounds the memory it may use,
and cleans up any cgroup it created.  Import the submodules directly.
"""
