"""Export formats people have: Last.fm's tab-separated .dat files, Latin-1 text, gzip/zstd, weight columns."""

import gzip
import subprocess
import warnings

import polars as pl
import pytest

import segmentation.data as data
from flows.cli import _load, build_parser, main
from segmentation._errors import ConfigError, DataError, DataWarning
from segmentation.config import ColumnMapping, DataConfig, load_config
from segmentation.data import load_dataset, load_files, sources

# Shaped like the HetRec 2011 Last.fm export (lastfm-2k): tab-separated, headers as in the real files.
USER_ARTISTS = "userID\tartistID\tweight\n2\t51\t13883\n2\t52\t11690\n2\t53\t11351\n3\t51\t228\n3\t54\t0\n4\t52\t1\n"
ARTISTS = (
    "id\tname\turl\tpictureURL\n"
    '51\t"Weird Al" Yankovic\thttp://www.last.fm/music/%22Weird+Al%22+Yankovic\thttp://userserve-ak.last.fm/a.jpg\n'
    "52\tGuns N' Roses\thttp://www.last.fm/music/Guns+N%27+Roses\t\n"
    '53\t12" Single Club Mix\thttp://www.last.fm/music/12%22\thttp://userserve-ak.last.fm/b.jpg\n'
    '54\t"Sweet" Baby James\thttp://www.last.fm/music/Sweet\t\n'
)
TAGS = "tagID\ttagValue\n1\tmetal\n2\tchanson française\n3\tmúsica latina\n4\tdeutsch-österreichisch\n"
USER_TAGS = "userID\ttagID\n2\t1\n2\t2\n3\t3\n3\t4\n4\t2\n"
LASTFM = ColumnMapping(user="userID", item="artistID", weight="weight", timestamp=None, item_id="id", title="name")
TAGGED = ColumnMapping(user="userID", item="tagID", rating=None, timestamp=None, item_id="tagID", title="tagValue")


@pytest.fixture
def lastfm(tmp_path):
    (tmp_path / "user_artists.dat").write_text(USER_ARTISTS, encoding="utf-8")
    (tmp_path / "artists.dat").write_text(ARTISTS, encoding="utf-8")
    (tmp_path / "tags.dat").write_bytes(TAGS.encode("latin-1"))
    (tmp_path / "user_tags.dat").write_text(USER_TAGS, encoding="utf-8")
    return tmp_path


def _quiet_load(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_files(*args, **kwargs)


def test_lastfm_dat_keeps_quotes_as_text_and_weights_as_ratings(lastfm):
    with pytest.warns(DataWarning, match=r"column 'weight': dropped the rows of weight 0.*row 5 has '0'"):
        ds = load_files(lastfm / "user_artists.dat", lastfm / "artists.dat", columns=LASTFM)
    titles = dict(ds.items.select("item_id", "title").iter_rows())
    assert titles == {"51": '"Weird Al" Yankovic', "52": "Guns N' Roses", "53": '12" Single Club Mix',
                      "54": '"Sweet" Baby James'}  # fmt: skip
    assert ds.implicit
    assert ds.interactions.schema == data.INTERACTIONS  # the frame keeps its schema
    got = {(u, i): r for u, i, r in ds.interactions.select("user_id", "item_id", "rating").iter_rows()}
    assert got == {("2", "51"): 13883.0, ("2", "52"): 11690.0, ("2", "53"): 11351.0, ("3", "51"): 228.0,
                   ("4", "52"): 1.0}  # fmt: skip
    assert any("weight 0" in n for n in ds.notes)


def test_quote_char_setting(lastfm, tmp_path):
    # a tab-separated export that does quote (pandas' to_csv(sep='\t')): ask for quoting
    (tmp_path / "quoted.tsv").write_text('id\tname\n51\t"Weird ""Al"" Yankovic"\n52\tGuns\n53\tx\n54\ty\n')
    cols = LASTFM.model_copy(update={"title": "name"})
    ds = _quiet_load(lastfm / "user_artists.dat", tmp_path / "quoted.tsv", columns=cols, quote_char='"')
    assert ds.items.filter(pl.col("item_id") == "51")["title"].item() == 'Weird "Al" Yankovic'
    ds = _quiet_load(lastfm / "user_artists.dat", tmp_path / "quoted.tsv", columns=cols)  # auto: none for TSV
    assert ds.items.filter(pl.col("item_id") == "51")["title"].item() == '"Weird ""Al"" Yankovic"'
    # a comma-separated file is quoted by default; '' reads quotes as text
    (tmp_path / "artists.csv").write_text('id,name\n51,"Yankovic, Al"\n52,"Guns N\' Roses"\n53,x\n54,y\n')
    ds = _quiet_load(lastfm / "user_artists.dat", tmp_path / "artists.csv", columns=cols)
    assert ds.items.filter(pl.col("item_id") == "51")["title"].item() == "Yankovic, Al"
    (tmp_path / "plain.csv").write_text('id,name\n51,"Al" Yankovic\n52,12" Mix\n53,x\n54,y\n')
    ds = _quiet_load(lastfm / "user_artists.dat", tmp_path / "plain.csv", columns=cols, quote_char="")
    assert ds.items.filter(pl.col("item_id") == "51")["title"].item() == '"Al" Yankovic'
    with pytest.raises(ConfigError, match="quote_char must be 'auto', '' .*given: 'ab'"):
        load_config(None, ["data.quote_char=ab"])


def test_latin1_tags_with_encoding_and_the_byte_offset_without(lastfm):
    ds = _quiet_load(lastfm / "user_tags.dat", lastfm / "tags.dat", columns=TAGGED, encoding="latin-1")
    assert sorted(ds.items["title"]) == ["chanson française", "deutsch-österreichisch", "metal", "música latina"]
    assert ds.implicit and ds.interactions["rating"].to_list() == [1.0] * 5
    ds = _quiet_load(lastfm / "user_tags.dat", lastfm / "tags.dat", columns=TAGGED, encoding="cp1252")
    assert "chanson française" in ds.items["title"].to_list()
    offset = TAGS.encode("latin-1").index("ç".encode("latin-1"))
    with pytest.raises(DataError) as err:
        load_files(lastfm / "user_tags.dat", lastfm / "tags.dat", columns=TAGGED)
    assert f"items file {lastfm / 'tags.dat'}, line 3: bytes are not UTF-8" in str(err.value)
    assert f"at byte {offset})" in str(err.value) and "data.encoding" in str(err.value)


def test_decoding_error_past_the_checked_head_names_its_byte(lastfm, tmp_path, monkeypatch):
    """A plain UTF-8 file is checked up to _HEAD_BYTES before scanning; a bad byte further on is found when polars fails."""
    monkeypatch.setattr(sources, "_HEAD_BYTES", 40)
    text = USER_ARTISTS.encode() + b"5\t5\xff1\t3\n"
    (tmp_path / "late.dat").write_bytes(text)
    with pytest.raises(DataError) as err:
        load_files(tmp_path / "late.dat", lastfm / "artists.dat", columns=LASTFM)
    assert f"ratings file {tmp_path / 'late.dat'}, line 8: bytes are not utf-8" in str(err.value)
    assert f"at byte {text.index(bytes([0xFF]))})" in str(err.value)


def _zstd(raw: bytes, path):
    path.with_suffix(".tmp").write_bytes(raw)
    subprocess.run(["zstd", "-q", "-f", str(path.with_suffix(".tmp")), "-o", str(path)], check=True)
    return path


@pytest.fixture
def compressed(tmp_path):
    """The same ratings as CSV, .csv.gz, .csv.zst, a gzip file without .gz, and a .tsv.gz."""
    csv = "userID,artistID,weight\n" + "\n".join(",".join(r.split("\t")) for r in USER_ARTISTS.splitlines()[1:]) + "\n"
    (tmp_path / "plays.csv").write_text(csv)
    (tmp_path / "plays.csv.gz").write_bytes(gzip.compress(csv.encode()))
    (tmp_path / "plays-nightly.csv").write_bytes(gzip.compress(csv.encode()))  # named as plain text
    (tmp_path / "plays.tsv.gz").write_bytes(gzip.compress(USER_ARTISTS.encode()))
    pl.DataFrame({"userID": ["2", "2", "2", "3", "3", "4"], "artistID": ["51", "52", "53", "51", "54", "52"],
                  "weight": [13883, 11690, 11351, 228, 0, 1]}).write_csv(tmp_path / "plays.csv.zst", compression="zstd")  # fmt: skip
    _zstd(ARTISTS.encode(), tmp_path / "artists.dat.zst")
    return tmp_path


@pytest.mark.parametrize("name", ["plays.csv.gz", "plays.csv.zst", "plays-nightly.csv", "plays.tsv.gz"])
def test_compressed_exports_read_like_plain_ones(compressed, lastfm, name):
    plain = _quiet_load(compressed / "plays.csv", lastfm / "artists.dat", columns=LASTFM)
    packed = _quiet_load(compressed / name, compressed / "artists.dat.zst", columns=LASTFM)
    assert packed.interactions.equals(plain.interactions)
    assert packed.items.equals(plain.items)
    assert (
        packed.items.filter(pl.col("item_id") == "51")["title"].item() == '"Weird Al" Yankovic'
    )  # .dat.zst: no quoting


def test_compressed_latin1_and_its_decoding_error(lastfm, tmp_path):
    packed = tmp_path / "tags.dat.gz"
    packed.write_bytes(gzip.compress(TAGS.encode("latin-1")))
    ds = _quiet_load(lastfm / "user_tags.dat", packed, columns=TAGGED, encoding="latin-1")
    assert "deutsch-österreichisch" in ds.items["title"].to_list()
    offset = TAGS.encode("latin-1").index("ç".encode("latin-1"))
    with pytest.raises(DataError, match=rf"line 3: bytes are not utf-8 \(invalid continuation byte at byte {offset} "
                       r"of the decompressed data\)"):  # fmt: skip
        load_files(lastfm / "user_tags.dat", packed, columns=TAGGED)


def test_a_damaged_gzip_export_is_a_data_error(lastfm, tmp_path):
    blob = gzip.compress(USER_ARTISTS.encode() * 200)
    (tmp_path / "cut.csv.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"cut.csv.gz is gzip-compressed but cannot be decompressed after byte \d+"):
        load_files(tmp_path / "cut.csv.gz", lastfm / "artists.dat", columns=LASTFM)


def test_a_ragged_line_in_a_compressed_tsv_is_named(lastfm, tmp_path):
    """Errors found in the UTF-8 copy of a compressed file name the original file and its line."""
    (tmp_path / "plays.tsv.gz").write_bytes(gzip.compress((USER_ARTISTS + '5\t5"1\t3\textra\n').encode()))
    with pytest.raises(DataError, match=r"plays.tsv.gz could not be .*line 8 has 4 fields, expected 3"):
        load_files(tmp_path / "plays.tsv.gz", lastfm / "artists.dat", columns=LASTFM)


def test_weighted_duplicates_are_summed_into_the_latest_row(lastfm, tmp_path):
    (tmp_path / "scrobbles.tsv").write_text(
        "userID\tartistID\tweight\tday\n2\t51\t10\t100\n2\t52\t4\t100\n2\t51\t5\t300\n2\t51\t2.5\t200\n3\t51\t1\t100\n"
    )
    cols = LASTFM.model_copy(update={"timestamp": "day"})
    with pytest.warns(DataWarning, match="2 duplicate .* summed the weights of each pair into its latest row"):
        ds = load_files(tmp_path / "scrobbles.tsv", lastfm / "artists.dat", columns=cols)
    rows = {(u, i): (r, t) for u, i, r, t in ds.interactions.iter_rows()}
    assert rows == {("2", "51"): (17.5, 300), ("2", "52"): (4.0, 100), ("3", "51"): (1.0, 100)}
    # without a weight column, implicit duplicates are not counted up: rating stays 1.0, the latest row is kept
    with pytest.warns(DataWarning, match="2 duplicate .* kept the latest of each"):
        ds = load_files(tmp_path / "scrobbles.tsv", lastfm / "artists.dat",
                        columns=cols.model_copy(update={"weight": None}))  # fmt: skip
    assert ds.interactions["rating"].to_list() == [1.0] * 3
    # data.duplicates = 'error' refuses them either way
    cfg = DataConfig(source="files", ratings=tmp_path / "scrobbles.tsv", items=lastfm / "artists.dat", columns=cols,
                     duplicates="error")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(DataError, match="summed the weights .*data.duplicates='error' forbids that"):
            load_dataset(cfg)


def test_weight_column_means_implicit_and_refuses_a_rating_column(tmp_path):
    assert ColumnMapping(weight="plays").rating is None  # the default 'rating' column is not expected then
    assert ColumnMapping().weight is None and ColumnMapping().rating == "rating"
    with pytest.raises(ConfigError, match="weight column 'plays' and rating column 'stars' are both set.*implicit"):
        load_config(None, ["data.columns.weight=plays", "data.columns.rating=stars"])
    # the effective configuration round-trips through TOML (no rating key is written back)
    (tmp_path / "segflow.toml").write_text('[data.columns]\nweight = "plays"\n')
    cfg = load_config(tmp_path / "segflow.toml")
    assert cfg.data.columns.rating is None and cfg.data.columns.weight == "plays"
    with pytest.raises(ConfigError, match="unknown encoding 'latin-9x'"):
        load_config(None, ["data.encoding=latin-9x"])


def test_cli_flags_load_a_lastfm_export(lastfm, tmp_path, capsys):
    """`segflow ... --weight-col --encoding` reach the loader as `segflow run` passes them (stopping after loading)."""
    (lastfm / "artists-latin1.dat").write_bytes(ARTISTS.replace("Guns N' Roses", "Motörhead").encode("latin-1"))
    argv = ["config", "--ratings", str(lastfm / "user_artists.dat"), "--items", str(lastfm / "artists-latin1.dat"),
            "--user-col", "userID", "--item-col", "artistID", "--weight-col", "weight", "--time-col", "",
            "--item-id-col", "id", "--title-col", "name", "--encoding", "latin-1"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert 'encoding = "latin-1"' in printed and 'weight = "weight"' in printed
    (tmp_path / "effective.toml").write_text(printed)
    config = _load(build_parser().parse_args(argv))
    assert load_config(tmp_path / "effective.toml").data == config.data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        ds = load_dataset(config.data)
    assert ds.implicit and ds.interactions.filter(pl.col("user_id") == "2")["rating"].sum() == 13883 + 11690 + 11351
    assert "Motörhead" in ds.items["title"].to_list() and '"Weird Al" Yankovic' in ds.items["title"].to_list()


def test_compressed_recbole_atomic_files(tmp_path):
    (tmp_path / "shop.inter.gz").write_bytes(
        gzip.compress(b"user_id:token\titem_id:token\trating:float\n1\ta\t4\n2\tb\t5\n")
    )
    (tmp_path / "shop.item").write_text('item_id:token\tname:token_seq\na\t"Weird Al" Yankovic\nb\tB\n')
    ds = load_files(tmp_path / "shop.inter.gz", tmp_path / "shop.item")
    assert ds.interactions["rating"].to_list() == [4.0, 5.0] and not ds.implicit
    assert ds.items.filter(pl.col("item_id") == "a")["title"].item() == '"Weird Al" Yankovic'


def test_grouplens_titles_are_decoded_as_latin1(tmp_path):
    """The original ml-100k u.item is Latin-1: accented titles come out right, not as replacement characters."""
    (tmp_path / "u.data").write_text("1\t10\t5\t881250949\n")
    genres = "|".join(["0"] * 8 + ["1"] + ["0"] * 10)
    (tmp_path / "u.item").write_bytes(f"10|Misérables, Les (1995)|01-Jan-1995||http://x|{genres}\n".encode("latin-1"))
    ds = data.load_grouplens(tmp_path)
    assert ds.items["title"].to_list() == ["Misérables, Les"]
