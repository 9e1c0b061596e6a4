"""The deployment entrypoint of prefect.yaml: ``flows/entrypoint.py:segflow_pipeline``.

A worker loads an entrypoint file as a script under its bare name. Defined in that script, the flow would be
pickled by reference to a module no Dask worker can import ("No module named 'pipeline'"); imported from
its package here, it and everything it references pickle as ``flows.pipeline.*``.
"""

from flows.pipeline import segflow_pipeline

__all__ = ["segflow_pipeline"]
