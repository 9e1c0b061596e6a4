"""Loaders, the validation step and the protocol's splits."""

import pickle

import numpy as np
import polars as pl
import pytest

from segmentation._errors import DataError, SchemaError
from segmentation.config import ColumnMapping
from segmentation.data import INTERACTIONS, ITEMS, check_schema, load_files, load_grouplens, split_ratings


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def files(tmp_path):
    r = write(
        tmp_path / "r.csv",
        "uid,iid,stars,when\n1,a,5,2020-01-01\n1,b,3,2020-01-02\n2,a,4,2020-02-01\n2,c,1,2020-03-01\n",
    )
    i = write(
        tmp_path / "i.csv", "id,name,genre,blurb\na,Alpha,Action|Drama,fast\nb,Beta,Comedy,fun\nc,Gamma (1999),,dark\n"
    )
    u = write(tmp_path / "u.csv", "uid,gender,age\n1,F,30\n2,M,40\n")
    cols = ColumnMapping(user="uid", item="iid", rating="stars", timestamp="when", item_id="id", title="name",
                         categories="genre", text=["blurb"], user_id="uid")  # fmt: skip
    return r, i, u, cols


def test_csv_with_column_mapping(files):
    r, i, u, cols = files
    ds = load_files(r, i, u, columns=cols)
    check_schema(ds.interactions, INTERACTIONS, what="t")
    check_schema(ds.items, ITEMS, what="t")
    assert ds.interactions.height == 4 and not ds.implicit
    assert ds.items.filter(pl.col("item_id") == "a")["categories"].to_list() == [["Action", "Drama"]]
    assert ds.items.filter(pl.col("item_id") == "c")["year"].item() == 1999
    assert ds.interactions["timestamp"][0] == 1577836800  # ISO date -> epoch seconds
    assert ds.users.columns == ["user_id", "gender", "age"]


def test_parquet_and_implicit(files, tmp_path):
    r, i, u, cols = files
    pl.read_csv(r).drop("stars").write_parquet(tmp_path / "r.parquet")
    ds = load_files(tmp_path / "r.parquet", i, columns=cols.model_copy(update={"rating": None}))
    assert ds.implicit and ds.interactions["rating"].to_list() == [1.0] * 4


def test_duplicates_keep_latest_with_warning(files, tmp_path):
    r, i, _, cols = files
    write(r, r.read_text() + "1,a,2,2021-01-01\n")
    with pytest.warns(UserWarning, match="1 duplicate"):
        ds = load_files(r, i, columns=cols)
    assert ds.interactions.filter((pl.col("user_id") == "1") & (pl.col("item_id") == "a"))["rating"].item() == 2.0


@pytest.mark.parametrize(
    ("ratings", "message"),
    [
        ("uid,iid,stars,when\n", "no data rows"),
        ("uid,iid,stars,when\n1,a,five,2020-01-01\n", r"row 1 has 'five'"),
        ("uid,iid,stars,when\n1,a,4,2020-01-01\n,b,4,2020-01-01\n", "row 2 has an empty or NaN id"),
        ("uid,iid,stars,when\n1,a,-3,2020-01-01\n", "must be >= 0"),
        ("uid,iid,stars,when\n1,a,nan,2020-01-01\n", "finite"),
        ("uid,iid,stars,when\n1,a,4,yesterday\n", "epoch seconds or ISO dates"),
        ("user,item\n1,a\n", r"no column\(s\)"),
    ],
)
def test_bad_ratings_name_file_and_row(files, ratings, message):
    r, i, _, cols = files
    write(r, ratings)
    with pytest.raises(DataError, match=message) as err:
        load_files(r, i, columns=cols)
    assert str(r) in str(err.value)


def test_missing_empty_directory_and_non_utf8(files, tmp_path):
    r, i, _, cols = files
    with pytest.raises(DataError, match="does not exist"):
        load_files(tmp_path / "nope.csv", i, columns=cols)
    with pytest.raises(DataError, match="is a directory"):
        load_files(tmp_path, i, columns=cols)
    with pytest.raises(DataError, match="empty"):
        load_files(write(tmp_path / "e.csv", ""), i, columns=cols)
    (tmp_path / "bad.csv").write_bytes(b"uid,iid,stars,when\n1,\xff\xfe,4,2020-01-01\n")
    with pytest.raises(DataError, match="line 2: bytes are not UTF-8"):
        load_files(tmp_path / "bad.csv", i, columns=cols)


def test_truncated_parquet(files, tmp_path):
    r, i, _, cols = files
    pl.read_csv(r).write_parquet(tmp_path / "r.parquet")
    blob = (tmp_path / "r.parquet").read_bytes()
    (tmp_path / "r.parquet").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="not a readable Parquet"):
        load_files(tmp_path / "r.parquet", i, columns=cols)


def test_unknown_items_dropped_or_refused(files):
    r, i, _, cols = files
    write(r, r.read_text() + "2,zzz,4,2020-04-01\n")
    with pytest.warns(UserWarning, match="dropped 1 interactions"):
        ds = load_files(r, i, columns=cols)
    assert "zzz" not in ds.interactions["item_id"].to_list()
    write(r, "uid,iid,stars,when\n1,x,4,2020-01-01\n2,y,4,2020-01-01\n")
    with pytest.raises(DataError, match="refer to items not in"):
        load_files(r, i, columns=cols)


def test_schema_error_lists_columns():
    with pytest.raises(SchemaError, match=r"missing columns \['rating', 'timestamp'\]"):
        check_schema(pl.DataFrame({"user_id": ["1"], "item_id": ["2"]}), INTERACTIONS, what="x")


def test_grouplens_layout(tmp_path):
    write(tmp_path / "u.data", "1\t10\t5\t881250949\n2\t10\t3\t881250950\n")
    genres = "|".join(["0"] * 5 + ["1"] + ["0"] * 13)
    write(tmp_path / "u.item", f"10|Toy Story (1995)|01-Jan-1995||http://x|{genres}\n")
    write(tmp_path / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    ds = load_grouplens(tmp_path)
    assert ds.items.row(0, named=True)["title"] == "Toy Story"
    assert ds.items.row(0, named=True)["categories"] == ["Comedy"]
    assert ds.items.row(0, named=True)["year"] == 1995
    assert ds.users.columns == ["user_id", "age", "gender", "occupation"]


def test_movielens_matches_protocol(ml100k):
    assert ml100k.interactions.height == 100_000 and ml100k.n_users == 943 and ml100k.n_items == 1682
    s = split_ratings(ml100k.interactions, "random90")
    assert s.train_full.height == 90_000 and s.test.height == 10_000
    assert round(s.train_full["rating"].mean(), 4) == 3.5317
    assert round(s.test["rating"].mean(), 4) == 3.5132
    assert s.test["user_id"].n_unique() == 924
    assert s.valid.height == 9_000
    t = split_ratings(ml100k.interactions, "temporal")
    per_user = ml100k.interactions.group_by("user_id").len()
    assert t.test.height == int((per_user["len"] // 5).sum())
    assert ml100k.items.filter(pl.col("item_id") == "1")["title"].item() == "Toy Story"


def test_temporal_split_takes_the_latest(planted):
    ds, _ = planted
    s = split_ratings(ds.interactions, "temporal", valid_fraction=0.1)
    last_train = s.train_full.group_by("user_id").agg(pl.col("timestamp").max().alias("t_train"))
    first_test = s.test.group_by("user_id").agg(pl.col("timestamp").min().alias("t_test"))
    both = last_train.join(first_test, on="user_id")
    assert (both["t_train"] <= both["t_test"]).all()


def test_valid_is_carved_from_train_and_seeded(planted):
    ds, _ = planted
    a = split_ratings(ds.interactions, "random90", seed=1)
    b = split_ratings(ds.interactions, "random90", seed=1)
    assert a.valid.equals(b.valid)
    assert a.test.join(a.valid, on=["user_id", "item_id"]).height == 0
    assert a.train.height + a.valid.height + a.test.height == ds.interactions.height
    assert np.isclose(a.valid.height / a.train_full.height, 0.1, atol=0.01)


def test_tags_file_joins_item_text_most_frequent_first(files, tmp_path):
    from embeddings.text import describe_items
    from segmentation.config import DataConfig
    from segmentation.data import MAX_TAGS_PER_ITEM, load_dataset

    r, i, u, cols = files
    # a Last.fm-style tab-separated .dat: quotes are text; "Dark" and "dark " are one tag, counted once per user
    many = "".join(f"{k}\ta\tt{k:02d}\n" for k in range(3, 3 + MAX_TAGS_PER_ITEM + 2))
    tags = write(tmp_path / "tags.dat", "uid\tiid\ttag\n1\ta\tDark\n2\ta\tdark \n2\ta\tdark\n1\ta\t\"noir\" classic\n"
                 "1\tb\tfunny\n9\tzz\tstray\n" + many)  # fmt: skip
    config = DataConfig(source="files", ratings=r, items=i, users=u, tags=tags,
                        columns=cols.model_copy(update={"tag_item": "iid"}))  # fmt: skip
    with pytest.warns(UserWarning, match="tags of 1 items not in the items file were left out"):
        ds = load_dataset(config)
    text = dict(zip(ds.items["item_id"], ds.items["text"]))
    head = 'fast. Tags: dark, "noir" classic, t03, t04'  # the commonest spelling of a tag
    assert text["a"].startswith(head), text["a"]
    assert text["a"].count(", ") == MAX_TAGS_PER_ITEM - 1  # capped
    assert text["b"] == "fun. Tags: funny" and text["c"] == "dark"  # an item without tags keeps its text
    assert any("left out" in n for n in ds.notes)
    desc = dict(zip(*describe_items(ds.items).to_dict(as_series=False).values()))
    assert desc["b"] == "Beta. Genres: Comedy. fun. Tags: funny"  # what the encoder embeds
    # without a tags file nothing changes (MovieLens 100k has none, so its embeddings and segments stay the same)
    plain = load_dataset(DataConfig(source="files", ratings=r, items=i, users=u, columns=cols))
    assert plain.items.equals(load_files(r, i, u, columns=cols).items)
    assert dict(zip(plain.items["item_id"], plain.items["text"]))["a"] == "fast"


def test_cli_tags_flag_sets_data_tags(files, tmp_path, capsys):
    from flows.cli import main

    r, i, _, _ = files
    tags = write(tmp_path / "tags.csv", "user_id,item_id,tag\n1,a,dark\n")
    assert main(["config", "--ratings", str(r), "--items", str(i), "--tags", str(tags)]) == 0
    assert f'tags = "{tags}"' in capsys.readouterr().out


def test_vocab_lookup_gives_the_same_numbers_by_dict_and_by_join(monkeypatch) -> None:
    import segmentation.data.contracts as contracts
    from segmentation.data import Vocab

    vocab = Vocab.from_ids([f"u{i:03d}" for i in range(300)])
    rng = np.random.default_rng(0)
    queries = [f"u{i:03d}" for i in rng.integers(0, 400, 2_000)]  # a quarter unknown
    small = vocab.lookup(queries, missing=-1)  # under the size limit: the dict
    assert (small == [int(q[1:]) if int(q[1:]) < 300 else -1 for q in queries]).all()
    monkeypatch.setattr(contracts, "_DICT_LOOKUP_MAX", 10)  # every lookup of more than 10 ids: the join
    for form in (queries, pl.Series(queries), np.asarray(queries, dtype=object)):
        got = vocab.lookup(form, missing=-1)
        assert got.dtype == np.int64 and (got == small).all()
    assert (vocab.lookup(queries, missing=7) == np.where(small < 0, 7, small)).all()
    with pytest.raises(KeyError, match=queries[int(np.argmax(small < 0))]):
        vocab.lookup(queries)
    known = [q for q, n in zip(queries, small) if n >= 0]
    assert (pickle.loads(pickle.dumps(vocab)).lookup(known) == small[small >= 0]).all()
