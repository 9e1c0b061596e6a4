"""segflow's segmentation library: data, user vectors, segments, profiles, predictors, evaluation.

Modules, one per stage (see docs/ARCHITECTURE.md): ``data``, ``represent``, ``reduce``,
``cluster``, ``describe``, ``predict``, ``rank``, ``evaluate``; ``stages`` exposes one typed
function per pipeline step; ``runs`` reads and writes run folders. Never imports Prefect.
"""

__version__ = "0.1.0"
