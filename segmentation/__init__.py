"""segflow's segmentation library: data, user vectors, segments, profiles, predictors, evaluation.

Modules, one per stage (see docs/ARCHITECTURE.md): ``data``, ``represent``, ``reduce``,
``cluster`` (with ``selection``), ``stability``, ``describe``, ``predict``, ``rank``, ``evaluate``; each
holds the typed function that the flow's task for its stage calls (``flows/pipeline.py`` lists them);
``runs`` reads and writes run folders. Never imports Prefect.
"""

__version__ = "0.1.0"
