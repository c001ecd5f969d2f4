"""``python -m bench <name> [args]``: runs ``bench.<name>.main(args)``; ``all`` runs each."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import bench


def available() -> list[str]:
    """The benchmark modules: those of ``bench`` with a ``main`` (not the baselines' package,
    not the pytest-benchmark suite)."""
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__)
                  if not m.ispkg and not m.name.startswith(("_", "test_"))
                  and m.name != "conftest")


def main(argv: list[str]) -> int:
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m bench {" + ",".join([*names, "all"]) + "} [args]")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "all":
        return max((importlib.import_module(f"bench.{n}").main(rest) for n in names), default=0)
    if name not in names:
        print(f"unknown benchmark {name!r}; choose from {', '.join(names)}", file=sys.stderr)
        return 2
    return importlib.import_module(f"bench.{name}").main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
