"""The ``alambic`` command.

alambic quickstart [--model M] [--base-url URL] ...   generate a small dataset
alambic runs list                                     stored runs, status and rows per step
alambic runs show PIPELINE [--run ID]                 one run in detail (JSON)
alambic runs delete PIPELINE [--run ID]               delete one run, or all of a pipeline
alambic runs clear                                    delete the whole cache
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

from alambic.errors import AlambicError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alambic",
        description="Build datasets with and for LLMs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("quickstart", help="generate a small dataset with a local model", add_help=False)
    runs = sub.add_parser("runs", help="list, show or delete stored runs")
    runs.add_argument("action", choices=["list", "show", "delete", "clear"])
    runs.add_argument("pipeline", nargs="?", help="pipeline name (show, delete)")
    runs.add_argument("--run", type=int, default=None, help="run id (default: the latest / all)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["quickstart"]:
        from alambic.quickstart import main as quickstart

        return quickstart(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _runs(args, parser)
    except AlambicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _runs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from alambic.pipeline import runs

    if args.action in ("show", "delete") and not args.pipeline:
        parser.error(
            f"`alambic runs {args.action}` needs a pipeline name (see `alambic runs list`)"
        )
    if args.action == "list":
        infos = runs.list_runs()
        if not infos:
            print("no stored runs")
        for info in infos:
            steps = ", ".join(f"{s.name}={s.rows}" for s in info.steps)
            print(
                f"{info.pipeline_name}\trun {info.run_id}\t{info.status}\t{info.started_at or '-'}\t{steps}"
            )
    elif args.action == "show":
        details = runs.show_run(args.pipeline, args.run)
        print(json.dumps(dataclasses.asdict(details), default=str, indent=2))
    elif args.action == "delete":
        deleted = runs.delete_run(args.pipeline, args.run)
        print(f"deleted {deleted} run(s) of {args.pipeline!r}")
    else:
        runs.clear_cache()
        print("cache cleared")
    return 0
