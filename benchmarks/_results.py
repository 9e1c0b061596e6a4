"""What the benchmark scripts share to record a result: the command that ran, and the JSON file written."""

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
