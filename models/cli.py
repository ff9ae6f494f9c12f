"""``python -m models COMMAND ...``: one entry point, one module per command.

Each command's module owns its own argument parsing (``main(argv) -> int``);
this file only dispatches, so that ``python -m models run`` does not import
the Go model and vice versa.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "run": ("models.scenario.cli", "play a scenario on the page model or on the real kernel"),
    "go": ("models.goruntime.cli", "simulate a Go service's heap over time"),
    "malloc": ("models.malloc.cli", "replay malloc/free on the glibc-like allocator model"),
    "quiz": ("models.quiz", "print a generated exercise (and, with --answers, its answers)"),
}


def usage() -> str:
    lines = ["usage: python -m models COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines.append("\n'python -m models COMMAND --help' describes each command.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"python -m models: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])
