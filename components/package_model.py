"""KFP component: package the evaluated model as a BentoML bento archive."""

from kfp import dsl
from kfp.dsl import Input, Metrics, Model, Output

from planets_mlops.components.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def package_model(
    model: Input[Model],
    metrics: Input[Metrics],
    bento: Output[Model],
    data_revision: str = "",
    version: str = "",
):
    """Package ``model`` with its pre/post-processing as a BentoML bento archive.

    The model (ONNX + classes + preprocessing) and its evaluation ``metrics`` go to a private
    BentoML store; the serving bento is built and exported to ``bento``, whose
    ``metadata['bento_tag']`` names it for ``bentoml import``/``serve``.

    Args:
        model: The trained model folder.
        metrics: The evaluation metrics, stored with the model.
        data_revision: Empty: the model's ``data_commit`` metadata (``unpublished`` for
            labels merged without a DVC version; ``data_content_hash`` and
            ``data_base_commit`` labels say what it was trained on).
        version: Empty: BentoML generates one.

    Returns:
        bento: The .bento archive; metadata['bento_tag'] names it.
    """
    from planets_mlops.package import package_model as package

    result = package(
        model.path,
        bento.path,
        metrics=dict(metrics.metadata),
        data_revision=data_revision
        or str(model.metadata.get("data_commit", ""))
        or ("unpublished" if model.metadata.get("data_content_hash") else ""),
        model_uri=model.uri,
        provenance=dict(model.metadata),
        version=version,
    )
    bento.metadata.update(result.metadata())
