"""The planted worlds of segmentation.synthetic: each mechanic is there, on small data (no UMAP)."""

import numpy as np
import polars as pl
import pytest

from segmentation.planted import NOISE_LABEL
from segmentation.synthetic import CLI_COLUMNS, WORLDS, synthetic_log, world_log

N = 3_000


def _events(log) -> pl.DataFrame:
    """Interactions with each user's truth and each item's main category."""
    main = log.items.select("item_id", pl.col("categories").str.split("|").list.first().alias("cat"))
    return log.interactions.join(log.labels, on="user_id").join(main, on="item_id")


def _category_shares(events: pl.DataFrame, segment: int) -> dict[str, float]:
    e = events.filter(pl.col("segment") == segment)
    counts = e.group_by("cat").len()
    return dict(zip(counts["cat"].to_list(), (counts["len"] / e.height).to_list()))


@pytest.fixture(scope="module")
def logs():
    return {name: world_log(name, N, n_items=1_500, seed=1) for name in WORLDS}


def test_worlds_are_documented_and_split_into_tuning_and_held_out():
    roles = [w.role for w in WORLDS.values()]
    assert roles.count("tuning") >= 2 and roles.count("held-out") >= 2
    assert all(len(w.mechanic) > 40 for w in WORLDS.values())
    assert {w.kwargs.get("mechanic") for w in WORLDS.values()} == {"taste", "style", "nested"}
    assert any(w.kwargs.get("feedback") == "implicit" for w in WORLDS.values())
    with pytest.raises(ValueError, match="unknown world"):
        world_log("atlantis", 100)
    with pytest.raises(ValueError, match="needs feedback='explicit'"):
        synthetic_log(100, 200, mechanic="style", feedback="implicit")


def test_no_two_segments_prefer_the_same_categories():
    # seed 1 drew the same pair twice before preferences were made distinct (11 distinct sets for 12 segments)
    for seed in range(4):
        log = synthetic_log(500, 1_000, n_segments=12, seed=seed)
        sets = [frozenset(c) for c in log.segment_categories]
        assert len(set(sets)) == len(sets), (seed, log.segment_categories)


def test_taste_segments_choose_their_categories(logs):
    log = logs["taste"]
    ev = _events(log)
    for s, cats in enumerate(log.segment_categories):
        shares = _category_shares(ev, s)
        assert sum(shares.get(c, 0.0) for c in cats) > 0.6  # taste 0.75, plus popularity picks that land there


def test_style_twins_choose_alike_and_rate_apart(logs):
    log = logs["style"]
    ev = _events(log)
    cats = log.segment_categories
    for a in range(0, 10, 2):
        b = a + 1
        assert cats[a] == cats[b]
        sa, sb = _category_shares(ev, a), _category_shares(ev, b)
        tv = 0.5 * sum(abs(sa.get(c, 0.0) - sb.get(c, 0.0)) for c in set(sa) | set(sb))
        assert tv < 0.1, (a, tv)  # what they choose does not tell them apart
        first, second = cats[a]

        def mean_rating(seg: int, cat: str) -> float:
            return float(ev.filter((pl.col("segment") == seg) & (pl.col("cat") == cat))["rating"].mean())

        # twin a rates its first category above its second, twin b the reverse, by a wide margin
        assert mean_rating(a, first) - mean_rating(a, second) > 1.2
        assert mean_rating(b, second) - mean_rating(b, first) > 1.2
    act = log.interactions.join(log.labels, on="user_id").group_by("user_id", "segment").len()
    per = act.group_by(pl.col("segment") % 2 == 1).agg(pl.col("len").mean()).sort("segment")["len"].to_list()
    assert 1.5 < per[1] / per[0] < 2.5  # the second twin is about twice as active


def test_nested_segments_lie_inside_their_parent(logs):
    log = logs["nested"]
    ev = _events(log)
    cats = log.segment_categories
    for parent in range(0, 10, 2):
        child = parent + 1
        assert cats[child][:2] == cats[parent] and len(cats[child]) == 3
        extra = cats[child][2]
        pc, cc = _category_shares(ev, parent), _category_shares(ev, child)
        # the child's own category takes half its taste picks (less after repeats of an item collapse); the parent
        # reaches it only by popularity
        assert cc.get(extra, 0.0) > max(0.15, 5 * pc.get(extra, 0.0))
        assert sum(cc.get(c, 0.0) for c in cats[parent]) > 0.3  # ... and the parent's categories for the rest


def _top2_share(events: pl.DataFrame) -> float:
    """Mean over users of the share of their interactions in their two most chosen categories."""
    per = events.group_by("user_id", "cat").len().sort("user_id", "len", descending=[False, True])
    top = per.group_by("user_id", maintain_order=True).agg(
        pl.col("len").head(2).sum().alias("top"), pl.col("len").sum()
    )
    return float((top["top"] / top["len"]).mean())


def test_personal_noise_users_belong_to_no_crowd(logs):
    ev = _events(logs["taste"])
    noise = ev.filter(pl.col("segment") == NOISE_LABEL)
    top = (noise.group_by("user_id", "cat").len().sort("len", descending=True)
           .group_by("user_id", maintain_order=True).agg(pl.col("cat").head(2).sort().str.join("+"), pl.col("len").sum()))  # fmt: skip
    assert top.height == round(0.05 * N)
    assert top["cat"].n_unique() > 0.5 * top.height  # their favourite pairs differ from user to user
    popular = synthetic_log(N, 1_500, noise="popularity", seed=1)
    pnoise = _events(popular).filter(pl.col("segment") == NOISE_LABEL)
    own_share, pop_share = _top2_share(noise), _top2_share(pnoise)
    assert own_share > pop_share + 0.15  # each personal noise user concentrates on a pair of their own


def test_sparse_implicit_world_is_mostly_light_users_with_counts(logs):
    log = logs["sparse-implicit"]
    assert log.feedback == "implicit"
    act = log.interactions.group_by("user_id").len()["len"]
    assert act.len() == N  # (repeats of one item collapse, so a few users end below min_per_user's 3)
    assert float((act <= 10).mean()) > 0.6
    r = log.interactions["rating"].to_numpy()
    assert (r >= 1).all() and np.array_equal(r, np.rint(r))


def test_light_world_is_a_tuning_world_of_light_users_with_ratings(logs):
    # the tuning stand-in for sparse-implicit's light users (held out): same activity, explicit feedback
    assert WORLDS["light"].role == "tuning" and WORLDS["sparse-implicit"].role == "held-out"
    log = logs["light"]
    assert log.feedback == "explicit"
    act = log.interactions.group_by("user_id").len()["len"]
    assert act.len() == N and float((act <= 10).mean()) > 0.6 and float(act.median()) <= 8
    taste = logs["taste"].interactions.group_by("user_id").len()["len"]
    assert float(taste.median()) >= 2 * float(act.median())  # the taste world's users have twice as many or more
    r = log.interactions["rating"]
    assert r.min() >= 1 and r.max() <= 5


def test_worlds_are_seeded(logs):
    again = world_log("nested", N, n_items=1_500, seed=1)
    assert again.interactions.equals(logs["nested"].interactions)
    assert not world_log("nested", N, n_items=1_500, seed=2).interactions.equals(again.interactions)


def _bench():
    from bench_loader import load_benchmark

    return load_benchmark("segmentation")


def test_noise_recall_and_precision_among_outliers():
    bench = _bench()
    truth = np.array([-1, -1, -1, -1, 0, 0, 1, 1, 1, 1])
    labels = np.array([-1, -1, -1, 0, -1, 0, 1, 1, 1, 1])  # 3 of 4 noise users out; 3 of 4 outliers are noise
    assert bench._noise_scores(truth, labels) == {"noise_recall": 0.75, "noise_precision": 0.75}
    assert bench._noise_scores(truth, np.zeros(10, int)) == {"noise_recall": 0.0, "noise_precision": None}


def test_the_default_choice_reads_tuning_worlds_only():
    bench = _bench()
    old = bench._setting_name(bench.OLD_CLUSTER)

    def row(system, role, ari, recall, precision):
        return {"system": system, "role": role, "ari": ari, "ari_excl_noise": ari, "noise_recall": recall,
                "noise_precision": precision}  # fmt: skip

    rows = [row(old, "tuning", 0.90, 0.0, 0.0), row(old, "tuning", 0.92, 0.1, 0.2),
            row("a", "tuning", 0.95, 0.2, 0.9), row("a", "tuning", 0.96, 0.3, 0.9),
            row("b", "tuning", 0.90, 0.7, 0.6), row("b", "tuning", 0.92, 0.6, 0.7),
            row("c", "tuning", 0.80, 0.9, 0.9), row("c", "tuning", 0.99, 0.9, 0.9),
            row("a", "held-out", 0.99, 1.0, 1.0), row("b", "held-out", 0.10, 0.0, 0.0)]  # fmt: skip
    out = bench.choose_world_setting(rows)
    # c meets the noise targets best but loses ARI against the old defaults (min 0.80 < 0.90): out; b meets the
    # targets without a loss; a would win with its held-out row (recall (0.2 + 0.3 + 1) / 3 = 0.5), which is not read
    assert out["chosen"] == "b"
    assert out["summary"]["a"]["runs"] == 2
    # no setting meets the noise targets: the best noise F1 among those that lose no ARI
    weak = [r for r in rows if r["system"] in (old, "a")]
    assert bench.choose_world_setting(weak)["chosen"] == "a"


def test_the_rule_can_weigh_a_setting_against_the_current_defaults():
    bench = _bench()

    def row(system, ari, recall, precision):
        return {"system": system, "role": "tuning", "ari": ari, "ari_excl_noise": ari, "noise_recall": recall,
                "noise_precision": precision}  # fmt: skip

    off = bench._setting_name(bench.NO_COHESION)
    rows = [row(off, 0.95, 0.1, 0.2), row(off, 0.93, 0.1, 0.3), row("segflow", 0.95, 0.4, 0.6),
            row("segflow", 0.90, 0.5, 0.6)]  # fmt: skip
    # against min_cohesion off, the current defaults lose 0.03 of minimum ARI: off stays, despite its weaker noise F1
    assert bench.choose_world_setting(rows, baseline=off)["chosen"] == off
    rows[-1]["ari"] = rows[-1]["ari_excl_noise"] = 0.93
    assert bench.choose_world_setting(rows, baseline=off)["chosen"] == "segflow"


@pytest.mark.parametrize("flag", ["--world-grid", "--world-candidates", "--evidence-grid"])
def test_tuning_sweeps_refuse_held_out_worlds(flag, capsys):
    bench = _bench()
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--no-main", "--worlds", "taste,nested", flag])
    assert exit_.value.code == 2
    assert "held out" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["taste", "sparse-implicit"])
def test_cli_rows_name_the_columns_the_world_export_has(name, tmp_path):
    # --worlds-cli and benchmarks/scale.py run `segflow run` on SyntheticLog.write's CSV files with CLI_COLUMNS:
    # every column it names exists
    log = world_log(name, 200, n_items=300, seed=0)
    files = log.write(tmp_path, fmt="csv")
    flags = dict(zip(CLI_COLUMNS[log.feedback][::2], CLI_COLUMNS[log.feedback][1::2]))
    ratings, items = pl.read_csv(files["ratings"]).columns, pl.read_csv(files["items"]).columns
    for flag in ("--user-col", "--item-col", "--time-col", "--rating-col", "--weight-col"):
        if flags.get(flag):
            assert flags[flag] in ratings, (flag, ratings)
    for flag in ("--item-id-col", "--title-col", "--category-col", "--text-cols"):
        assert flags[flag] in items, (flag, items)
    assert ("--weight-col" in flags) == (log.feedback == "implicit")


def _oracle_ari(log, interactions=None, kept=1.0) -> float:
    from sklearn.metrics import adjusted_rand_score

    found = log.labels.join(log.generator.bayes_labels(log.interactions if interactions is None else interactions,
                                                       kept=kept), on="user_id", suffix="_oracle")  # fmt: skip
    return float(adjusted_rand_score(found["segment"], found["segment_oracle"]))


def test_the_oracle_recovers_the_planted_labels_on_an_easy_world():
    # strong taste, many interactions, few segments: the Bayes labelling that knows the generator is all but perfect
    easy = synthetic_log(800, 600, mean_per_user=60, n_segments=4, taste=0.95, n_categories=12, noise="personal",
                         seed=0)  # fmt: skip
    assert _oracle_ari(easy) > 0.97
    labels = easy.generator.bayes_labels(easy.interactions)
    assert labels.height == 800 and set(labels["segment"].unique().to_list()) == {-1, 0, 1, 2, 3}


@pytest.mark.parametrize("name", ["light", "style", "sparse-implicit"])
def test_the_oracle_beats_a_random_labelling_and_its_posterior_is_calibrated(logs, name):
    from sklearn.metrics import adjusted_rand_score

    from segmentation.data import split_ratings

    log = logs[name]
    rng = np.random.default_rng(0)
    shares = log.generator.prior
    random = rng.choice(np.r_[np.arange(len(shares) - 1), -1], log.labels.height, p=shares)  # labels by the prior
    assert abs(adjusted_rand_score(log.labels["segment"], random)) < 0.02
    assert _oracle_ari(log) > 0.8
    # the posterior is the generator's: its mean highest probability matches the share it labels right, on all
    # interactions and on a random 90 % of them (the count of interactions thinned binomially)
    inter = split_ratings(log.interactions, "random90").train_full
    for rows, kept in ((log.interactions, 1.0), (inter, inter.height / log.interactions.height)):
        users, post = log.generator.log_posterior(rows, kept=kept)
        assert np.allclose(np.exp(post).sum(axis=1), 1.0)
        truth = log.labels.join(pl.DataFrame({"user_id": users, "i": np.arange(len(users))}), on="user_id")
        best = post.argmax(axis=1)[truth["i"].to_numpy()]
        t = truth["segment"].to_numpy()
        right = np.where(t < 0, len(shares) - 1, t) == best
        assert abs(float(np.exp(post.max(axis=1)).mean()) - float(right.mean())) < 0.02


def test_the_oracle_refuses_items_it_did_not_draw(logs):
    stray = pl.DataFrame({"user_id": ["u0"], "item_id": ["not-an-item"], "rating": [3.0]})
    with pytest.raises(ValueError, match="did not draw"):
        logs["taste"].generator.log_likelihoods(stray)


def test_oracle_rows_score_both_views_of_a_world():
    rows = _bench().run_worlds_oracle(["light"], 600, [0])
    assert [r["system"] for r in rows] == ["oracle[all interactions]", "oracle[random90 train_full]"]
    assert all(r["path"] == "oracle" and 0.5 < r["ari"] <= 1.0 for r in rows)
    assert rows[0]["notes"]["kept"] == 1.0 and 0.89 < rows[1]["notes"]["kept"] < 0.91
