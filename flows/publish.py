"""The flow's publish task: write the run folder through the library, render the report from the folder, publish.

The library writes every file (:func:`segmentation.publish.write_run`) into the run's hidden partial folder; the
report is then rendered from that folder alone (:func:`segmentation.run_folder.load_run_folder`), exactly as
``segflow report RUN_DIR`` renders it later; leaving the :class:`~segmentation.runs.RunWriter` publishes the
folder whole (rename, then ``latest``). A failure anywhere removes the partial folder and leaves ``latest`` as it was.
"""

from reports import render_report
from segmentation.publish import write_run
from segmentation.run_folder import load_run_folder
from segmentation.runs import RunWriter

__all__ = ["publish"]


def publish(config, dataset, split, segmentation, described, items, users, indexes, global_model, segment_models,
            rankings, metrics: dict, encoder_stats: dict, timings: dict, stability: dict | None = None,
            space=None) -> str:  # fmt: skip
    """Write the run folder (data, indexes, models, metrics, comparison), render its report, publish it as ``latest``.

    Takes the stages' results (see :func:`segmentation.publish.write_run`); returns the published folder's path.
    """
    writer = RunWriter(config.output_dir, keep_last=config.output.keep_last)
    with writer:
        write_run(writer, config, dataset, split, segmentation, described, items, users, indexes, global_model,
                  segment_models, rankings, metrics, encoder_stats, timings, stability, space)  # fmt: skip
        render_report(load_run_folder(writer.path, allow_partial=True), writer.path / "report")
    return str(writer.final_path)
