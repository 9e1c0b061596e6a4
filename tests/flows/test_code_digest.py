"""Stage cache keys follow the code each stage can run: a fix in evaluation keeps the earlier stages cached."""

import shutil
from pathlib import Path

import pytest

from flows.code_digest import library_digest, module_graph, stage_digest
from segmentation import stages

STAGES = ["load", "split", "embed_items", "represent", "segment", "stability", "describe", "index", "train_global",
          "fine_tune", "rank", "evaluate"]  # fmt: skip


@pytest.fixture
def library_copy(tmp_path) -> Path:
    root = Path(stages.__file__).resolve().parents[1]
    for pkg in ("segmentation", "embeddings"):
        shutil.copytree(root / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _digests(root: Path) -> dict[str, str]:
    return {name: stage_digest(getattr(stages, name), root) for name in STAGES}


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_a_fix_in_evaluation_changes_only_the_evaluate_key(library_copy):
    before = _digests(library_copy)
    _edit(library_copy / "segmentation" / "evaluate.py", "def evaluate_ratings(", "def evaluate_ratings(  # fixed\n")
    after = _digests(library_copy)
    assert {s for s in STAGES if before[s] != after[s]} == {"evaluate"}


def test_a_change_in_clustering_reaches_every_stage_that_uses_segments(library_copy):
    before = _digests(library_copy)
    _edit(library_copy / "segmentation" / "cluster.py", "NOISE = ", "NOISE: int = ")
    changed = {s for s in STAGES if before[s] != _digests(library_copy)[s]}
    assert {"segment", "stability", "describe", "fine_tune", "rank", "evaluate", "index"} <= changed
    # load (through preflight's user-count checks) and embed_items (through the pipeline glue module) do reach
    # cluster.py; neither is a cached task (embeddings have their own cache by text hash)
    assert "split" not in changed and "train_global" not in changed


def test_a_change_in_the_stage_function_itself_or_a_helper_it_calls(library_copy):
    before = _digests(library_copy)
    _edit(library_copy / "segmentation" / "stages.py", 'rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E6]))',
          'rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E7]))')  # random_partition, used by fine_tune
    after = _digests(library_copy)
    assert {s for s in STAGES if before[s] != after[s]} == {"fine_tune"}


def test_a_package_is_followed_through_its_reexports(library_copy):
    # segmentation.data and segmentation.rank are packages: stages import their names from the package's __init__
    before = _digests(library_copy)
    _edit(library_copy / "segmentation" / "data" / "split.py", "def split_ratings(", "def split_ratings(  # fixed\n")
    middle = _digests(library_copy)
    assert "split" in {s for s in STAGES if before[s] != middle[s]}
    _edit(library_copy / "segmentation" / "rank" / "ease.py", "def ease_weights(", "def ease_weights(  # fixed\n")
    assert {s for s in STAGES if middle[s] != _digests(library_copy)[s]} == {"rank"}


def test_lazy_imports_count_and_unknown_functions_fall_back_to_the_whole_library():
    graph = module_graph()
    assert "segmentation.predict" in graph["segmentation.stages"]  # imported inside train_global, not at the top
    assert stage_digest(lambda: None) == library_digest()
