"""The library packages never import Prefect (flows/ is the only place that does)."""

import subprocess
import sys


def test_libraries_do_not_import_prefect():
    code = (
        "import sys\n"
        "import segmentation.publish, segmentation.runs, segmentation.cache, segmentation.evaluate, segmentation.rank\n"
        "import segmentation.represent, segmentation.stability, embeddings.encoder, embeddings.finetune, embeddings.index\n"
        "import reports\n"
        "bad = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
