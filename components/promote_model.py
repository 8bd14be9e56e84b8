"""KFP component: move the ``production`` alias to a registered version and record the release.

Reads ``MLFLOW_TRACKING_URI`` from the environment (the ``mlflow-tracking`` Secret on a
cluster). With ``tracking`` off it moves nothing and lets the gate's verdict stand.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Model, Output

from planets_mlops.components.images import RUNTIME_IMAGE
from planets_mlops.knobs import PIPELINE_KNOBS, RegistryParams, describe_knobs


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
@describe_knobs(RegistryParams, PIPELINE_KNOBS)
def promote_model(
    registered: Input[Artifact],
    verdict: Input[Markdown],
    bento: Input[Model],
    release: Output[Markdown],
    kfp_run_id: str = "",
    tracking: bool = False,
    registered_model_name: str = "planets-classifier",
    allow_untracked: bool = False,
    lock_ttl_s: float = 300.0,
    lock_wait_s: float = 60.0,
    move_production: bool = True,
) -> NamedTuple("Outputs", [("production_version", str)]):  # type: ignore[valid-type]
    """Point ``production`` at the registered version, atomically, and write the release record.

    The move happens inside the registry's promotion lock and only if ``production`` still
    names the version the gate compared against (``verdict.metadata['production_version']``):
    of two promotions started at once exactly one wins; the other is refused, its version
    stays ``candidate`` and the refusal is the ``release`` Markdown. The record (data
    version, code revision, images, version, bento, gate, how to reproduce) is also stored
    as JSON in the registry.

    Args:
        registered: ``register_model``'s output (version, gate figures).
        verdict: The gate's verdict (``production_version`` it compared with).
        bento: The packaged bento of the version.
        kfp_run_id: The KFP run id (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``).
        move_production: Off (the pipeline's ``release`` off, a pull request's run): the
            version gets its bento and keeps ``candidate``; production does not move and
            nothing is deployed. The merge promotes it (``planets-mlops ci promote``).

    Returns:
        release: The release record (or the refusal) as Markdown.
        production_version: The version production now names; untracked when nothing is tracked; empty
            when the promotion was refused (the deploy step then does not run).
    """
    from pathlib import Path

    from planets_mlops.knobs import RegistryParams
    from planets_mlops.registry.steps import promote_model as promote

    outcome = promote(
        RegistryParams(
            tracking=tracking,
            model_name=registered_model_name,
            allow_untracked=allow_untracked,
            lock_ttl_s=lock_ttl_s,
            lock_wait_s=lock_wait_s,
        ),
        registered=dict(registered.metadata),
        verdict=dict(verdict.metadata),
        verdict_path=verdict.path,
        bento=dict(bento.metadata),
        bento_uri=bento.uri,
        kfp_run_id=kfp_run_id,
        move_production=move_production,
    )
    Path(release.path).write_text(outcome.markdown, encoding="utf-8")
    release.metadata.update(outcome.metadata())

    class Outputs(NamedTuple):
        production_version: str

    return Outputs(outcome.production())
