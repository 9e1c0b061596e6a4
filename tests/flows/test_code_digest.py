"""Stage cache keys follow the code each stage can run: a fix in evaluation keeps the earlier stages cached."""

import shutil
from pathlib import Path

import pytest

import segmentation
from flows import pipeline
from flows.code_digest import library_digest, module_graph, stage_digest

# the stage functions flows/pipeline.py runs, by the names of its tasks' stages
STAGES = {"load": pipeline.load_for_run, "split": pipeline.split_ratings, "embed_items": pipeline.embed_items,
          "represent": pipeline.represent_users, "segment": pipeline.segment_users,
          "stability": pipeline.measure_stability, "describe": pipeline.describe_run, "index": pipeline.build_indexes,
          "train_global": pipeline.fit_global_predictor, "fine_tune": pipeline.fine_tune_segments,
          "rank": pipeline.rank_test_users, "evaluate": pipeline.evaluate_run,
          "cold_start": pipeline.cold_start_users}  # fmt: skip


@pytest.fixture
def library_copy(tmp_path) -> Path:
    root = Path(segmentation.__file__).resolve().parents[1]
    for pkg in ("segmentation", "embeddings"):
        shutil.copytree(root / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _digests(root: Path) -> dict[str, str]:
    return {name: stage_digest(fn, root) for name, fn in STAGES.items()}


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
    assert {"segment", "stability", "describe", "fine_tune", "rank", "evaluate"} <= changed
    # load reaches cluster.py through preflight's user-count checks (it is not a cached task); the encoder and the
    # indexes run no segmentation code (the index stage reads the segments it is given)
    assert not {"split", "train_global", "embed_items", "index"} & changed


def test_a_change_in_the_stage_function_itself_or_a_helper_it_calls(library_copy):
    before = _digests(library_copy)
    _edit(
        library_copy / "segmentation" / "predict.py",
        "rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E6]))",
        "rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E7]))",
    )  # random_partition, used by fine_tune and by cold_start (its control)
    after = _digests(library_copy)
    assert {s for s in STAGES if before[s] != after[s]} == {"fine_tune", "cold_start"}


def test_a_package_is_followed_through_its_reexports(library_copy):
    # segmentation.data and segmentation.rank are packages: stages import their names from the package's __init__
    before = _digests(library_copy)
    _edit(library_copy / "segmentation" / "data" / "split.py", "def split_ratings(", "def split_ratings(  # fixed\n")
    middle = _digests(library_copy)
    assert "split" in {s for s in STAGES if before[s] != middle[s]}
    _edit(library_copy / "segmentation" / "rank" / "ease.py", "def ease_weights(", "def ease_weights(  # fixed\n")
    # the cold-start stage fits the primary ranker too (its ranking half)
    assert {s for s in STAGES if middle[s] != _digests(library_copy)[s]} == {"rank", "cold_start"}


def test_lazy_imports_count_and_unknown_functions_fall_back_to_the_whole_library():
    graph = module_graph()
    assert "segmentation.selection" in graph["segmentation.cluster"]  # imported inside fit_segments, not at the top
    assert stage_digest(lambda: None) == library_digest()


def test_stage_digests_computed_in_many_threads_at_once_agree():
    """The task runner computes stages' cache keys in several threads at once; ast.parse is not thread-safe on
    CPython 3.11 (a 100k-user run lost a stage's cached result to "AST constructor recursion depth mismatch"):
    the digests are built one thread at a time, and all agree."""
    from concurrent.futures import ThreadPoolExecutor

    from flows import code_digest
    from segmentation.evaluate import evaluate_run
    from segmentation.rank import rank_test_users

    fns = [evaluate_run, rank_test_users] * 8
    code_digest._graph.cache_clear()
    code_digest._stage_digest.cache_clear()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(code_digest.stage_digest, fns))
    assert got == [code_digest.stage_digest(f) for f in fns] and got[0] != got[1]
