"""KFP component: the model a monitoring run judges, resolved when the run starts.

Reads ``MLFLOW_TRACKING_URI`` (the ``mlflow-tracking`` Secret) with ``tracking`` on. Never
cached: production moves while the inputs stay the same.
"""

from typing import NamedTuple

from kfp import dsl

from planets_mlops.components.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def resolve_production(
    model_version: str = "",
    model_uri: str = "",
    tracking: bool = False,
    registered_model_name: str = "planets-classifier",
    service_url: str = "",
) -> NamedTuple(  # type: ignore[valid-type]  # the form KFP reads outputs from
    "Production", [("model_version", str), ("model_uri", str), ("registry_version", str), ("source", str)]
):
    """The model tag and model folder of production now, or of ``model_version`` if named.

    Args:
        model_version: A model tag named by hand (then ``model_uri`` too); empty: production.
        model_uri: The model folder; empty: the one production names.
        tracking: On: the registry's ``production`` alias of ``registered_model_name`` decides.
        registered_model_name: The registered model.
        service_url: With tracking off: the deployed service, whose ``/metadata`` decides.

    Returns:
        model_version: The model tag the service writes its records under.
        model_uri: The model's folder (holds monitoring_reference.json).
        registry_version: The registered version production names; empty when not from the registry.
        source: What decided: the registry alias, the service's /metadata, or the tag named by hand.
    """
    from planets_mlops.knobs import RegistryParams
    from planets_mlops.monitoring.production import resolve_production as resolve

    registry = RegistryParams(tracking=tracking, model_name=registered_model_name)
    found = resolve(model_version, model_uri, registry, service_url)
    print(f"judging {found.model_version} ({found.source} {found.registry_version})".rstrip())
    return (found.model_version, found.model_uri, found.registry_version, found.source)
