"""Experiment tracking and the model registry on MLflow.

- :mod:`.settings`: where the tracking server is (``MLFLOW_TRACKING_URI``), credentials,
  and a fast reachability check that names the URI and the fix.
- :mod:`.tracking`: one MLflow run per pipeline run, nested the way the KFP MLflow plugin
  nests them (a parent tagged ``kfp.pipeline_run_id``, a child per task tagged
  ``kfp.task_name``), reused when it already exists.
- :mod:`.registry`: model versions with their lineage tags (:mod:`.versions`), the promotion
  lock (:mod:`.lock`), alias moves by compare-and-set and the record of every move
  (:mod:`.aliases`), behind one front door.
- :mod:`.release`: the release record of a promotion (JSON and Markdown) and the command
  that reproduces its model.

``mlflow`` is imported inside functions only: the base install (enough to compile) has no
MLflow, the runtime image has ``mlflow-skinny``.
"""
