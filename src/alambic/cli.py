"""The ``alambic`` command: ``alambic quickstart``, ``alambic runs ...``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="alambic", description="Build datasets with and for LLMs."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("quickstart", help="generate a small dataset with a local model", add_help=False)
    runs = sub.add_parser("runs", help="list, show or delete stored runs")
    runs.add_argument("action", choices=["list", "show", "delete", "clear"])
    runs.add_argument("name", nargs="?", help="pipeline name (show/delete)")
    if argv[:1] == ["quickstart"]:
        from alambic.quickstart import main as quickstart

        return quickstart(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "runs":
        from alambic.pipeline import runs as store_runs

        if args.action == "list":
            for info in store_runs.list_runs():
                print(json.dumps(_plain(info), default=str))
        elif args.action == "show":
            print(json.dumps(_plain(store_runs.show_run(args.name)), default=str, indent=2))
        elif args.action == "delete":
            store_runs.delete_run(args.name)
        elif args.action == "clear":
            store_runs.clear_cache()
    return 0


def _plain(value: object) -> object:
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value
