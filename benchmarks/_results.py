"""What the benchmark scripts share to record a result: the command that ran, and the JSON file written."""

import argparse
import json
import sys
from pathlib import Path


def command(script: str, argv: list[str] | None) -> str:
    """``python benchmarks/<script> <args>`` as the script was called (``argv`` None: the process's own arguments)."""
    return f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])


def write_json(path: Path, data: object) -> None:
    """Write ``data`` to ``path`` (indented, a newline at the end; folders made) and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}")


def tuning_world_args(
    p: argparse.ArgumentParser, argv: list[str] | None, tuning: tuple[str, ...], out: Path, what: str
) -> tuple[argparse.Namespace, list[str]]:
    """Add ``--worlds`` (default: ``tuning``), ``--seeds``, ``--users`` and ``--out`` (default ``out``) to ``p``, parse
    ``argv``, and refuse a world outside ``tuning`` (``what`` says what is chosen on them); the arguments and the
    worlds."""
    p.add_argument("--worlds", default=",".join(tuning), help="comma-separated tuning worlds")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--out", type=Path, default=out)
    a = p.parse_args(argv)
    worlds = a.worlds.split(",")
    if any(w not in tuning for w in worlds):
        p.error(f"{what} on the tuning worlds only ({', '.join(tuning)})")
    return a, worlds
