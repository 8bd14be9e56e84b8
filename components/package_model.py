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
    """Save ``model`` (ONNX + classes + preprocessing) with its evaluation ``metrics`` to a
    private BentoML store, build the serving bento and export it to ``bento`` (a ``.bento``
    archive; ``metadata['bento_tag']`` names it for ``bentoml import``/``serve``).

    Empty ``data_revision`` takes the model's ``data_commit`` metadata; empty ``version``
    lets BentoML generate one.
    """
    import logging

    from planets_mlops.package import package_model as package

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    revision = data_revision or str(model.metadata.get("data_commit", "")) or "unknown"
    info = package(
        model.path,
        bento.path,
        metrics=dict(metrics.metadata),
        data_revision=revision,
        model_uri=model.uri,
        version=version,
    )
    bento.metadata.update(
        {
            "bento_tag": info["bento_tag"],
            "model_tag": info["model_tag"],
            "data_revision": revision,
            "model_uri": model.uri,
            "classes": info["classes"],
            "size_bytes": info["size_bytes"],
            "serving_requirements": info["requirements"],
            "framework": "onnxruntime",
        }
    )
