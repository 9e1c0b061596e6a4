"""Bad input: every case ends in one clear paragraph, exit status 2, no traceback, and earlier runs untouched.

Each case of the corpus runs ``segflow run`` in-process (``flows.cli.main``), which runs the Prefect flow
under the session's test harness; data errors are raised inside a Prefect task and must reach the CLI as
the original :class:`SegflowError`. A few cases also call the flow directly, one runs as a child process
(the console output of a real ``segflow``), and the repairs the loader makes instead of failing are
tested at the end.
"""

import gzip
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest
from reliability_helpers import ROOT, assert_untouched, make_published_run, run_env, snapshot, write_base_files

from flows.cli import main
from flows.pipeline import segflow_pipeline  # imports Prefect, which binds its console log to the session's stderr
from segmentation._errors import ConfigError, DataError, DataWarning, SchemaError, SegflowError

pytestmark = pytest.mark.usefixtures("prefect_harness")

HEADER = "user_id,item_id,rating,timestamp\n"


@dataclass(frozen=True)
class Case:
    """One bad input: how to spoil the base files, extra CLI arguments, and what the message must say.

    ``spoil(files, folder)`` edits the files in place and may return extra CLI arguments.
    ``expect`` are substrings of the message; ``names`` says which file's path it must contain.
    ``in_flow``: the flow, called directly, raises it too (False: only the CLI's configuration loading can).
    ``segflow run`` refuses every case before it starts a flow run (it checks the data first).
    """

    id: str
    spoil: Callable[[dict[str, Path], Path], list[str] | None]
    expect: list[str]
    error: type[SegflowError] = DataError
    names: str | None = "ratings"
    in_flow: bool = True
    marks: list = field(default_factory=list)


def _append(name: str, text: str | bytes):
    def spoil(files, folder):
        p = files[name]
        p.write_bytes(p.read_bytes() + (text.encode() if isinstance(text, str) else text))

    return spoil


def _replace(name: str, content: str | bytes):
    def spoil(files, folder):
        files[name].write_bytes(content.encode() if isinstance(content, str) else content)

    return spoil


def _sub(name: str, old: str, new: str):
    def spoil(files, folder):
        p = files[name]
        text = p.read_text()
        assert old in text
        p.write_text(text.replace(old, new))

    return spoil


def _args(*args: str):
    return lambda files, folder: list(args)


def _truncated_parquet(files, folder):
    p = folder / "ratings.parquet"
    pl.read_csv(files["ratings"]).write_parquet(p)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])  # an export cut off mid-write
    files["ratings"] = p


def _parquet_named_csv(files, folder):
    pl.read_csv(files["ratings"]).write_parquet(files["ratings"])


def _parquet_bool_ratings(files, folder):
    p = folder / "ratings.parquet"
    pl.read_csv(files["ratings"]).with_columns(pl.col("rating") > 2).write_parquet(p)
    files["ratings"] = p


def _weights(row: str):
    """The rating column becomes a play count (--weight-col plays), with one more row."""

    def spoil(files, folder):
        p = files["ratings"]
        p.write_text(p.read_text().replace("rating,", "plays,", 1) + row)
        return ["--weight-col", "plays"]

    return spoil


def _encoded(raw: bytes, *args: str, gzipped: bool = False):
    """Bytes appended to the ratings file (then gzip-compressed, if asked), read with CLI ``args``."""

    def spoil(files, folder):
        p = files["ratings"]
        blob = p.read_bytes() + raw
        p.write_bytes(gzip.compress(blob) if gzipped else blob)
        return list(args)

    return spoil


def _truncated_gzip(files, folder):
    blob = gzip.compress(files["ratings"].read_bytes())
    files["ratings"] = folder / "ratings.csv.gz"
    files["ratings"].write_bytes(blob[: len(blob) // 2])


def _directory(files, folder):
    files["ratings"] = folder / "exports"
    files["ratings"].mkdir()


def _missing(files, folder):
    files["ratings"] = folder / "ratings-2024-01-01.csv"


def _rating_scale(row: str):
    def spoil(files, folder):
        with files["ratings"].open("a") as f:
            f.write(row)
        return ["--set", "data.rating_scale=[1, 5]"]

    return spoil


def _few_users(n):
    def spoil(files, folder):
        write_base_files(folder, n_users=n)

    return spoil


def _config_file(text):
    def spoil(files, folder):
        (folder / "segflow.toml").write_text(text)
        return ["--config", str(folder / "segflow.toml")]

    return spoil


def _not_a_model(files, folder):
    (folder / "my-model").mkdir()
    (folder / "my-model" / "weights.bin").write_bytes(b"\0" * 16)
    return ["--set", f"encoder.model='{folder / 'my-model'}'"]


def _tags(text: str | None):
    """A tags file (``--tags``) with ``text``; None: a path that does not exist."""

    def spoil(files, folder):
        files["tags"] = folder / ("tags.csv" if text is not None else "missing-tags.csv")
        if text is not None:
            files["tags"].write_text(text)
        return ["--tags", str(files["tags"])]

    return spoil


def _output_is_file(files, folder):
    (folder / "runs.txt").write_text("not a folder")
    return ["--output", str(folder / "runs.txt")]


CASES = [
    # ---- files that are empty, missing, unreadable or damaged
    Case("ratings-empty-file", _replace("ratings", b""), ["is empty (0 bytes)"]),
    Case("ratings-header-only", _replace("ratings", HEADER), ["has a header but no data rows"]),
    Case("items-empty-file", _replace("items", b""), ["is empty (0 bytes)"], names="items"),
    Case("items-header-only", _replace("items", "item_id,title,categories\n"), ["no data rows"], names="items"),
    Case("users-header-only", _replace("users", "user_id,gender,age\n"), ["no data rows"], names="users"),
    Case("ratings-missing-file", _missing, ["does not exist"]),
    Case("ratings-is-a-directory", _directory, ["is a directory", "expected a CSV, TSV or Parquet file"]),
    Case(
        "ratings-not-utf8",
        _append("ratings", "u1,i3,4,1600000000\nJos\xe9,i2,3,1600000000\n".encode("latin-1")),
        ["line 323", "not UTF-8", "Set data.encoding (or --encoding)", "re-export the file as UTF-8"],
    ),  # fmt: skip
    Case(
        "ratings-not-the-given-encoding",
        _encoded(b"u1,i3,4,1600000000\nx\x81y,i2,3,1600000000\n", "--encoding", "cp1252"),
        ["line 323", "bytes are not cp1252", "character maps to <undefined>", "Set data.encoding"],
    ),  # fmt: skip
    Case(
        "ratings-gzip-not-utf8",
        _encoded("Jos\xe9,i2,3,1600000000\n".encode("latin-1"), gzipped=True),
        ["line 322", "bytes are not utf-8", "of the decompressed data", "Set data.encoding"],
    ),  # fmt: skip
    Case("ratings-gzip-truncated", _truncated_gzip, ["is gzip-compressed but cannot be decompressed", "truncated"]),
    Case(
        "items-not-utf8",
        _append("items", "i99,Café “Noir”,Drama\n".encode("cp1252")),
        ["line 32", "not UTF-8"],
        names="items",
    ),  # fmt: skip
    Case("ratings-nul-bytes", _append("ratings", b"u1,i3,4,16\x00\x00\x00\x00\n"), ["line 322", "NUL byte"]),
    Case("ratings-truncated-parquet", _truncated_parquet, ["not a readable Parquet file", "truncated"]),
    Case("parquet-named-csv", _parquet_named_csv, ["is a Parquet file", ".parquet"]),
    Case("ratings-extra-field", _append("ratings", "u1,i3,4,1600000000,oops\n"), ["line 322 has 5 fields, expected 4"]),
    Case(
        "ratings-unclosed-quote",
        _append("ratings", 'u1,"i3,4,1600000000\nu2,i4,5,1600000000\n'),
        ["line 322", "unclosed quote"],
    ),  # fmt: skip
    # ---- missing or misnamed columns
    Case(
        "ratings-no-rating-column",
        _sub("ratings", "rating,", "score,"),
        ["no column(s) ['rating']", "the file has ['user_id', 'item_id', 'score', 'timestamp']"],
        SchemaError,
    ),  # fmt: skip
    Case(
        "ratings-misnamed-ids",
        _sub("ratings", "user_id,item_id", "userId,movieId"),
        ["no column(s) ['user_id', 'item_id']", "userId", "data.columns.user"],
        SchemaError,
    ),  # fmt: skip
    Case("ratings-wrong-column-option", _args("--user-col", "customer"), ["no column(s) ['customer']"], SchemaError),
    Case(
        "items-misnamed-id",
        _sub("items", "item_id,", "id,"),
        ["no column(s) ['item_id']", "--item-id-col"],
        SchemaError,
        names="items",
    ),  # fmt: skip
    Case(
        "items-missing-text-column",
        _args("--text-cols", "overview"),
        ["no text column(s) ['overview']"],
        SchemaError,
        names="items",
    ),  # fmt: skip
    Case(
        "users-misnamed-id", _sub("users", "user_id,", "uid,"), ["no column(s) ['user_id']"], SchemaError, names="users"
    ),  # fmt: skip
    # ---- wrong types and values
    Case(
        "rating-not-a-number",
        _append("ratings", "u1,i3,five,1600000000\n"),
        ["column 'rating'", "expected numbers", "row 321 has 'five'"],
    ),  # fmt: skip
    Case("rating-decimal-comma", _append("ratings", 'u1,i3,"3,5",1600000000\n'), ["row 321 has '3,5'"]),
    Case("rating-empty", _append("ratings", "u1,i3,,1600000000\n"), ["row 321 has an empty value"]),
    Case("rating-negative", _append("ratings", "u1,i3,-2,1600000000\n"), ["must be >= 0", "row 321 has '-2'"]),
    Case(
        "rating-above-scale",
        _rating_scale("u1,i3,7,1600000000\n"),
        ["must lie in data.rating_scale [1, 5]", "row 321 has '7'", "widen data.rating_scale"],
    ),  # fmt: skip
    Case("rating-nan", _append("ratings", "u1,i3,NaN,1600000000\n"), ["finite", "row 321 has 'NaN'"]),
    Case("rating-infinite", _append("ratings", "u1,i3,inf,1600000000\n"), ["finite", "'inf'"]),
    Case(
        "rating-too-large",
        _append("ratings", "u1,i3,1e300,1600000000\n"),
        ["column 'rating': 1 ratings are above 1.84e+19 (the largest is 1e+300)", "data.columns.rating"],
    ),  # fmt: skip
    Case("rating-boolean-parquet", _parquet_bool_ratings, ["expected numbers", "row 1 has 'false'"]),
    Case(
        "weight-negative",
        _weights("u1,i3,-2,1600000000\n"),
        ["column 'plays'", "weights must be > 0", "row 321 has '-2'"],
    ),  # fmt: skip
    Case(
        "weight-not-a-number",
        _weights("u1,i3,many,1600000000\n"),
        ["column 'plays'", "weights must be numbers", "row 321 has 'many'"],
    ),  # fmt: skip
    Case(
        "timestamp-not-a-time",
        _append("ratings", "u1,i3,4,last tuesday\n"),
        ["column 'timestamp'", "epoch seconds or ISO dates", "'last tuesday'"],
    ),  # fmt: skip
    Case("timestamp-empty", _append("ratings", "u1,i3,4,\n"), ["row 321 has an empty value", "--time-col ''"]),
    Case(
        "timestamp-not-finite",
        _append("ratings", "u1,i3,4,1e300\nu2,i4,4,nan\n"),
        ["column 'timestamp'", "epoch seconds or ISO dates", "row 321 has '1e300' (2 such rows)"],
    ),  # fmt: skip
    # ---- ids
    Case("user-id-empty", _append("ratings", ",i3,4,1600000000\n"), ["column 'user_id'", "row 321", "empty or NaN id"]),
    Case("user-id-nan", _append("ratings", "NaN,i3,4,1600000000\n"), ["row 321 has an empty or NaN id"]),
    Case(
        "item-id-empty-in-items", _append("items", ",Nameless,Drama\n"), ["row 31 has an empty item id"], names="items"
    ),  # fmt: skip
    Case(
        "user-id-control-character",
        _append("ratings", '"u\x01x",i3,4,1600000000\n'),
        ["control character", "'u\\x01x'"],
    ),  # fmt: skip
    # ---- relations between the files
    Case(
        "duplicates-refused",
        _append("ratings", "u1,i7,2,1700000000\n"),
        ["1 duplicate (user, item) rows", "data.duplicates='error'"],
    ),  # fmt: skip
    Case(
        "item-described-twice",
        _append("items", "i3,Another film,Drama\n"),
        ["item id 'i3' is described 2 times"],
        names="items",
    ),  # fmt: skip
    Case("items-not-described", _sub("items", "\ni", "\nx"), ["320 of 320 interactions refer to items not in"]),
    Case("user-listed-twice", _append("users", "u3,F,33\n"), ["user id 'u3' appears 2 times"], names="users"),
    Case("too-few-users", _few_users(5), ["5 users are too few"]),
    Case("too-few-users-to-cluster", _few_users(20), ["20 users are too few for segments", "min_cluster_size"]),
    # ---- configuration
    Case(
        "config-unknown-key",
        _args("--set", "cluster.min_cluster_sise=20"),
        ["cluster.min_cluster_sise: unknown key"],
        ConfigError,
        names=None,
        in_flow=False,
    ),  # fmt: skip
    Case(
        "config-impossible-value",
        _args("--set", "cluster.min_cluster_size=1"),
        ["cluster.min_cluster_size", "greater than or equal to 2", "(given: 1)"],
        ConfigError,
        names=None,
        in_flow=False,
    ),  # fmt: skip
    Case(
        "config-encoder-quantize-unknown",
        _args("--set", "encoder.quantize='int4'"),
        ["encoder.quantize", "Input should be 'none' or 'int8'", "(given: 'int4')"],
        ConfigError,
        names=None,
        in_flow=False,
    ),  # fmt: skip
    Case(
        "config-rating-scale-reversed",
        _args("--set", "data.rating_scale=[5, 1]"),
        ["data.rating_scale must be [lowest, highest]", "[5.0, 1.0]"],
        ConfigError,
        names=None,
        in_flow=False,
    ),  # fmt: skip
    Case(
        "config-weight-with-rating-column",
        _args("--weight-col", "plays", "--rating-col", "stars"),
        ["weight column 'plays' and rating column 'stars' are both set", "implicit data", "--rating-col ''"],
        ConfigError,
        names=None,
        in_flow=False,
    ),  # fmt: skip
    Case(
        "config-unknown-encoding",
        _args("--encoding", "latin-9x"),
        ["data.encoding", "unknown encoding 'latin-9x'"],
        ConfigError,
        names=None,
        in_flow=False,
    ),  # fmt: skip
    Case(
        "config-wrong-type",
        _args("--set", "predictor.mf.epochs=many"),
        ["predictor.mf.epochs", "'many'"],
        ConfigError,
        names=None,
        in_flow=False,
    ),  # fmt: skip
    Case(
        "config-cold-start-k-below-1",
        _args("--set", "predictor.cold_start.ks=[0, 3]"),
        ["predictor.cold_start.ks", "every k must be at least 1", "(given: [0, 3])"],
        ConfigError,
        names=None,
        in_flow=False,
    ),  # fmt: skip
    Case(
        "config-cold-start-blend-weight-above-1",
        _args("--set", "predictor.cold_start.blend_weights=[0.5, 2]"),
        ["predictor.cold_start.blend_weights", "every blend weight must be above 0 and at most 1", "(given: [0.5, 2"],
        ConfigError,
        names=None,
        in_flow=False,
    ),  # fmt: skip
    Case(
        "config-unknown-nested-key",
        _args("--set", "predictor.svdpp.time_bin=4"),
        ["predictor.svdpp.time_bin: unknown key"],
        ConfigError,
        names=None,
        in_flow=False,
    ),  # fmt: skip
    Case(
        "config-override-empty-key-part",
        _args("--set", "cluster..min_samples=3"),
        ["cluster..min_samples=3", "the key has an empty part"],
        ConfigError,
        names=None,
        in_flow=False,
    ),  # fmt: skip
    Case(
        "config-file-deprecated-and-new-key",
        _config_file("[predictor]\nepochs = 5\n[predictor.mf]\nepochs = 7\n"),
        [
            "segflow.toml",
            "predictor.epochs (deprecated, now predictor.mf.epochs) and predictor.mf.epochs are both given",
        ],
        ConfigError,
        names=None,
        in_flow=False,
    ),  # fmt: skip
    Case(
        "config-deprecated-dense-cells-not-a-count",
        _args("--set", "predictor.max_dense_cells=1.5e3x"),
        ["predictor.max_dense_cells (deprecated) must be a whole number of cells", "predictor.dense_budget_mib"],
        ConfigError,
        names=None,
        in_flow=False,
    ),  # fmt: skip
    Case(
        "config-file-deprecated-dense-cells-and-budget",
        _config_file("[predictor]\nmax_dense_cells = 1000000\ndense_budget_mib = 64\n"),
        [
            "segflow.toml",
            "predictor.max_dense_cells (deprecated, now predictor.dense_budget_mib) and predictor.dense_budget_mib "
            "are both given",
        ],
        ConfigError,
        names=None,
        in_flow=False,
    ),  # fmt: skip
    Case(
        "config-report-base-url-not-http",
        _args("--set", "report.base_url='ftp://files.example.com/runs'"),
        ["report.base_url", "expected an http:// or https:// URL", "ftp://files.example.com/runs"],
        ConfigError,
        names=None,
        in_flow=False,
    ),  # fmt: skip
    Case(
        "config-override-without-value",
        _args("--set", "seed"),
        ["not of the form key=value"],
        ConfigError,
        names=None,
        in_flow=False,
    ),  # fmt: skip
    Case(
        "config-file-missing",
        _args("--config", "/nonexistent/segflow.toml"),
        ["/nonexistent/segflow.toml", "does not exist"],
        ConfigError,
        names=None,
        in_flow=False,
    ),  # fmt: skip
    Case(
        "config-file-not-toml",
        _config_file("[data\nsplit = random90\n"),
        ["segflow.toml", "not valid TOML"],
        ConfigError,
        names=None,
        in_flow=False,
    ),  # fmt: skip
    Case(
        "config-file-unknown-section",
        _config_file("[clustering]\nmin_cluster_size = 20\n"),
        ["segflow.toml", "clustering: unknown key"],
        ConfigError,
        names=None,
        in_flow=False,
    ),  # fmt: skip
    Case("config-empty-items-path", _args("--set", "data.items=''"), ["no items file given", "--items"], names=None),
    Case(
        "encoder-model-path-missing",
        _args("--set", "encoder.model=/nonexistent"),
        ["encoder.model '/nonexistent': no such file or folder"],
        ConfigError,
        names=None,
    ),  # fmt: skip
    Case(
        "encoder-model-not-a-model", _not_a_model, ["not a sentence-transformers model folder"], ConfigError, names=None
    ),  # fmt: skip
    Case("output-is-a-file", _output_is_file, ["runs.txt exists and is not a folder"], names=None),
    # ---- the optional tags file (user, item, tag)
    Case("tags-file-missing", _tags(None), ["tags file", "does not exist"], names="tags"),
    Case(
        "tags-no-tag-column",
        _tags("user_id,item_id,label\nu1,i1,dark\n"),
        ["no column(s) ['tag']", "data.columns.tag"],
        SchemaError,
        names="tags",
    ),  # fmt: skip
    Case(
        "tags-empty-tag",
        _tags("user_id,item_id,tag\nu1,i1,dark\nu2,i2,\nu3,i3,\n"),
        ["column 'tag': row 2 has an empty tag (2 such rows)"],
        names="tags",
    ),  # fmt: skip
    Case(
        "tags-empty-item",
        _tags("user_id,item_id,tag\nu1,,dark\n"),
        ["column 'item_id': row 1 has an empty item id"],
        names="tags",
    ),  # fmt: skip
    Case(
        "tags-control-character",
        _tags("user_id,item_id,tag\nu1,i1,da\x01rk\n"),
        ["column 'tag': row 1 has a tag with a control character"],
        names="tags",
    ),  # fmt: skip
    Case(
        "tags-items-unknown",
        _tags("user_id,item_id,tag\nu1,x1,dark\nu2,x2,funny\n"),
        ["none of its 2 item ids is in the items file", "data.columns.tag_item"],
        names="tags",
    ),  # fmt: skip
    Case("tags-header-only", _tags("user_id,item_id,tag\n"), ["has a header but no data rows"], names="tags"),
]


@pytest.fixture(scope="module")
def protected(tmp_path_factory):
    """A folder of run folders with one published run, shared by every case: none may change it."""
    out = tmp_path_factory.mktemp("project") / "runs"
    make_published_run(out)
    return out


@pytest.fixture(scope="module")
def case_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _cli_args(files: dict[str, Path], out: Path, cache: Path, extra: list[str]) -> list[str]:
    args = ["run", "--ratings", str(files["ratings"]), "--items", str(files["items"]), "--users", str(files["users"]),
            "--output", str(out), "--set", f"cache_dir='{cache}'", "--set", "data.duplicates='error'", *extra]  # fmt: skip
    if "--output" in extra:  # the case's own output folder wins
        i = args.index("--output")
        del args[i : i + 2]
    return args


def _prepare(case: Case, folder: Path) -> tuple[dict[str, Path], list[str]]:
    files = write_base_files(folder)
    extra = case.spoil(files, folder) or []
    return files, extra


def test_corpus_is_large_and_varied():
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.error for c in CASES} == {DataError, SchemaError, ConfigError}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_cli_explains_and_keeps_earlier_runs(case, tmp_path, protected, case_cache, capsys):
    files, extra = _prepare(case, tmp_path)
    before = snapshot(protected)
    known = _flow_runs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        code = main(_cli_args(files, protected, case_cache, extra))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    message = err.split("segflow: error: ", 1)[1]
    paragraph = message.split("\nNothing was published")[0]
    assert "\n\n" not in paragraph.strip(), "the explanation is one paragraph"
    for text in case.expect:
        assert text in paragraph, f"{text!r} not in {paragraph!r}"
    if case.names:
        assert str(files[case.names]) in paragraph, f"the message does not name the {case.names} file"
    assert "earlier runs and" in err and "--debug" in err
    # fail fast: the CLI checks the configuration and the data before it starts Prefect, so no flow run exists
    assert _flow_runs_since(known) == [], "bad input must stop the CLI before any flow run"
    assert_untouched(protected, before)


def _flow_runs() -> set:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return {r.id for r in client.read_flow_runs(limit=200)}


def _flow_runs_since(known: set) -> list:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return [r for r in client.read_flow_runs(limit=200) if r.id not in known]


FLOW_CASES = {c.id: c for c in CASES if c.id in {"ratings-truncated-parquet", "ratings-misnamed-ids",
                                                 "rating-not-a-number", "too-few-users", "encoder-model-path-missing",
                                                 "output-is-a-file"}}  # fmt: skip


@pytest.mark.parametrize("case_id", sorted(FLOW_CASES))
def test_flow_reraises_the_segflow_error(case_id, tmp_path, protected, case_cache):
    """Called directly (a deployment, a notebook), the flow raises the library's error itself, not a wrapper."""
    from segmentation.config import load_config

    case = FLOW_CASES[case_id]
    files, extra = _prepare(case, tmp_path)
    overrides = ["data.source=files", f"data.ratings='{files['ratings']}'", f"data.items='{files['items']}'",
                 f"output_dir='{protected}'", f"cache_dir='{case_cache}'"]  # fmt: skip
    for flag, value in zip(extra[::2], extra[1::2]):
        overrides.append(value if flag == "--set" else f"output_dir='{value}'")
    before = snapshot(protected)
    with pytest.raises(case.error) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        segflow_pipeline(load_config(None, overrides))
    assert type(info.value) is case.error
    assert all(text in str(info.value) for text in case.expect)
    assert_untouched(protected, before)


def test_flow_refuses_bad_parameters_from_the_ui():
    """A deployment's parameters (the UI's form, the API) are validated by Prefect before the flow starts."""
    from prefect.exceptions import ParameterTypeError

    with pytest.raises(ParameterTypeError, match="min_cluster_sise"):
        segflow_pipeline(config={"cluster": {"min_cluster_sise": 20}})
    with pytest.raises(ParameterTypeError, match="valid_fraction"):
        segflow_pipeline(config={"data": {"valid_fraction": 2}})


def test_debug_shows_the_traceback(tmp_path, protected, case_cache, capsys):
    files = write_base_files(tmp_path)
    _append("ratings", "u1,i3,five,1600000000\n")(files, tmp_path)
    code = main(["--debug", *_cli_args(files, protected, case_cache, [])])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback (most recent call last)" in err and "segmentation/data/tables.py" in err
    assert "segflow: error: ratings file" in err


def test_user_errors_are_not_retried():
    """The load task retries transient failures, but bad input fails the same way again: no retry, no delay."""
    from prefect.states import Failed

    from flows.pipeline import _retry_unless_user_error

    assert _retry_unless_user_error(None, None, Failed(data=DataError("bad file"))) is False
    assert _retry_unless_user_error(None, None, Failed(data=ConfigError("bad key"))) is False
    assert _retry_unless_user_error(None, None, Failed(data=OSError("NFS hiccup"))) is True


def test_child_process_prints_no_traceback(tmp_path, protected, case_cache):
    """A real ``segflow`` process: Prefect's console log shows the error's line, not its traceback."""
    files = write_base_files(tmp_path)
    _append("ratings", "u1,i3,five,1600000000\n")(files, tmp_path)
    before = snapshot(protected)
    proc = subprocess.run([sys.executable, "-m", "flows.cli", *_cli_args(files, protected, case_cache, [])],
                          cwd=ROOT, env=run_env(tmp_path), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert f"segflow: error: ratings file {files['ratings']}, column 'rating': expected numbers" in proc.stderr
    assert "temporary server" not in proc.stderr, "bad data must be found before Prefect starts"
    assert_untouched(protected, before)


# ---------------------------------------------------------------- repairs instead of errors


def _load(files, **columns):
    from segmentation.config import DataConfig
    from segmentation.data import load_dataset

    cfg = DataConfig(source="files", ratings=files["ratings"], items=files["items"], users=files.get("users"),
                     columns=columns or {})  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_dataset(cfg)
    return ds, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def test_duplicates_keep_the_latest_and_warn_with_a_count(tmp_path):
    files = write_base_files(tmp_path)
    _append("ratings", "u1,i7,2,1700000000\nu1,i8,1,1500000000\nu2,i14,5,1700000000\n")(files, tmp_path)
    ds, warned = _load(files)
    assert any("3 duplicate (user, item) rows; kept the latest of each" in w for w in warned)
    rows = ds.interactions.filter(pl.col("user_id") == "u1").sort("item_id")
    assert rows.filter(pl.col("item_id") == "i7")["rating"].item() == 2.0  # later timestamp wins
    assert rows.filter(pl.col("item_id") == "i8")["rating"].item() != 1.0  # earlier duplicate loses
    assert ds.interactions.height == 320 and "duplicate" in ds.notes[0]


def test_users_without_ratings_are_reported(tmp_path):
    files = write_base_files(tmp_path)
    _append("users", "ghost1,F,20\nghost2,M,30\n")(files, tmp_path)
    ds, warned = _load(files)
    assert any("2 users have no ratings (e.g. 'ghost1')" in w for w in warned)
    assert ds.n_users == 40


def test_a_few_undescribed_items_are_dropped_with_a_warning(tmp_path):
    files = write_base_files(tmp_path)
    _append("ratings", "u1,zz1,4,1600000000\nu2,zz2,4,1600000000\n")(files, tmp_path)
    ds, warned = _load(files)
    assert any("dropped 2 interactions with items missing" in w and "'zz1'" in w for w in warned)
    assert ds.interactions.height == 320


def test_export_quirks_are_read(tmp_path):
    """Blank lines at the end, a UTF-8 byte-order mark, CRLF line ends, ';' as separator, Parquet list columns."""
    files = write_base_files(tmp_path)
    text = files["ratings"].read_text()
    files["ratings"].write_bytes(b"\xef\xbb\xbf" + text.replace(",", ";").replace("\n", "\r\n").encode() + b"\r\n\r\n")
    _append("items", "\n\n")(files, tmp_path)
    items = pl.read_csv(files["items"]).with_columns(pl.col("categories").str.split("|"))
    items.write_parquet(tmp_path / "items.parquet")
    files["items"] = tmp_path / "items.parquet"
    ds, warned = _load(files)
    assert warned == []
    assert ds.interactions.height == 320 and ds.n_users == 40
    assert ds.items.filter(pl.col("item_id") == "i0")["categories"].item().to_list() == ["Action", "Comedy"]


def test_show_and_clean_explain_too(tmp_path, capsys):
    assert main(["show", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "is not a complete segflow run folder" in err and "Traceback" not in err
    assert "Nothing was published" not in err
    assert main(["clean", "--set", "seed=-1"]) == 2
    assert "seed" in capsys.readouterr().err
