"""The top-k rankers' section (``ranker``)."""

from pydantic import Field

from segmentation.config._base import _Section


class RankerConfig(_Section):
    """Top-k recommenders evaluated side by side."""

    rankers: list[str] = Field(
        default_factory=lambda: ["most-popular", "item-knn", "ease", "segflow"],
        description="Rankers evaluated side by side (most-popular, item-knn, ease, rp3beta, als, segflow); the "
        "last one also lists what to recommend to each segment.",
    )
    knn_neighbors: int = Field(50, ge=1, description="Neighbours per item of the item-kNN ranker.")
    like_threshold: float = Field(
        4.0, description="Train ratings at or above this count as liked (segflow ranker; validation relevance)."
    )
    valid_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="Share of train rows carved out to choose ranker hyper-parameters."
    )
    max_valid_users: int = Field(
        5000, ge=10, description="Most users scored when comparing hyper-parameters on the validation carve."
    )
    max_items: int = Field(
        10_000,
        ge=10,
        description="Item-item rankers (dense) keep only this many most popular items (logged); EASE and segflow "
        "hold about six max_items x max_items float64 matrices (10,000 items: about 5 GB).",
    )
    ease_reg: float | None = Field(
        None, gt=0.0, description="EASE's L2 penalty lambda; empty: chosen on validation from ease_reg_grid."
    )
    ease_reg_grid: list[float] = Field(
        default_factory=lambda: [100.0, 200.0, 300.0, 500.0, 700.0, 1000.0],
        min_length=1,
        description="EASE lambdas tried on the validation carve.",
    )
    rp3_alpha_grid: list[float] = Field(
        default_factory=lambda: [0.6, 0.8, 1.0],
        min_length=1,
        description="RP3beta alphas tried on the validation carve.",
    )
    rp3_beta_grid: list[float] = Field(
        default_factory=lambda: [0.4, 0.5, 0.6, 0.7],
        min_length=1,
        description="RP3beta betas tried on the validation carve.",
    )
    segflow_like_weights: list[float] = Field(
        default_factory=lambda: [0.5, 1.0],
        min_length=1,
        description="segflow ranker: extra input weight of a liked item (1 + a), tried on validation.",
    )
    segflow_target_weights: list[float] = Field(
        default_factory=lambda: [1.0, 2.0],
        min_length=1,
        description="segflow ranker: extra target weight of a liked item (1 + w), tried on validation.",
    )
    segflow_reg_grid: list[float] = Field(
        default_factory=lambda: [150.0, 300.0, 600.0],
        min_length=1,
        description="segflow ranker: lambdas tried, scaled by the mean squared input weight.",
    )
    segflow_dropouts: list[float] = Field(
        default_factory=lambda: [0.0],
        min_length=1,
        description="segflow ranker: emphasised-denoising dropout p (ridge + p/(1-p) * item degree), tried "
        "(0.5 won on validation but changed no test figure on MovieLens, at twice the fitting time).",
    )
    segflow_content_weights: list[float] = Field(
        default_factory=lambda: [0.0, 0.05, 0.1, 0.2],
        min_length=1,
        description="segflow ranker: weights of the item-description embedding similarity in the blend, tried.",
    )
    segment_max_users: int | None = Field(
        10_000,
        ge=0,
        description="What to recommend to a segment is aggregated from the top-k lists of at most this many of "
        "its members: a larger segment's members are sampled uniformly with the run's seed (a share of the "
        "lists, rec_share, is then within about 1 percentage point of the whole segment's, at 95 %). 0 or "
        "empty: every member.",
    )
    content_neighbors: int = Field(
        50, ge=1, description="segflow ranker: neighbours per item of the embedding similarity."
    )
    dense_budget_mib: int = Field(
        1536,
        ge=1,
        description="Memory budget of a dense items x items ranker (EASE, item-kNN, RP3beta, the segflow ranker's "
        "EASE and content parts), estimated as six n_items x n_items float64 matrices. Above it the segflow ranker "
        "falls back to ALS and logs why, the others refuse to fit, and segmentation.rank.choose_rankers leaves them "
        "out of a run's list (1536 MiB: about 5,800 items; ML-100k's 1,682 items take 130 MiB).",
    )
    als_factors_grid: list[int] = Field(
        default_factory=lambda: [32, 128],
        min_length=1,
        description="ALS (implicit): numbers of latent factors tried on the validation carve. The ALS defaults were "
        "chosen on the validation carves of MovieLens 100k's random90 train and a synthetic 6,000 x 3,000 tuning "
        "log, never a test split (docs/BENCHMARKS.md, 'Rankers at scale').",
    )
    als_reg_grid: list[float] = Field(
        default_factory=lambda: [3.0, 10.0, 30.0],
        min_length=1,
        description="ALS: L2 regularisation values tried on the validation carve (the setting that matters most: "
        "MovieLens 100k chose 10, the synthetic log 30; 0.01 and 1 lost 0.03 to 0.13 NDCG@10).",
    )
    als_iterations_grid: list[int] = Field(
        default_factory=lambda: [10, 20],
        min_length=1,
        description="ALS: numbers of sweeps tried on the validation carve (one fit per factors x regularisation "
        "pair, scored after each listed sweep).",
    )
    grid_max_users: int | None = Field(
        0,
        ge=0,
        description="ALS: above this many train users, each candidate of the validation grid is fitted on the "
        "carve's rows of a seeded uniform sample of this many users (the users scored are drawn among them), and "
        "only the final fit with the chosen point sees every user; the log says what was sampled. Each candidate is "
        "a whole fit: at 1M users (synthetic M) 6 grid fits and the final one took 1,150 s. Off by default (0 or "
        "empty: every user): at M a sample of 100,000 users chose 128 factors where the whole carve chose 32, and "
        "the run's test NDCG@10 fell from 0.062 to 0.030, below popularity's 0.048 (docs/BENCHMARKS.md).",
    )
    als_alpha: float = Field(
        1.0,
        gt=0.0,
        description="ALS: confidence of an interaction is alpha x its weight, an unobserved pair's is 1 (implicit's "
        "convention; a liked rating weighs 1, an implicit count log1p(count)); 1 beat 5 and 20 on MovieLens 100k's "
        "validation carve.",
    )
    threads: int = Field(
        0,
        ge=0,
        description="CPU threads of the ALS ranker's sweeps and top-k (0: every core of the machine; 1: one "
        "thread, for crowded machines). The dense rankers' algebra runs on BLAS's own threads.",
    )
