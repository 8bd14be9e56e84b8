"""Turn ``params.yaml`` and ``--param k=v`` flags into pipeline arguments.

The guide keeps the knobs in a nested ``params.yaml``::

    prepare: {seed: 5241, split: 0.2, image_size: [32, 32], grayscale: true}
    train: {seed: 5241, lr: 0.001, epochs: 10, conv_size: 64, dense_size: 128,
            output_classes: 10}

Pipelines take flat, typed parameters (``prepare_seed``, ``train_lr``, ``data_rev``...).
This module maps one onto the other, checks types, and checks the names against the
inputs of a compiled pipeline (read from its IR YAML, so no ``kfp`` import here).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from planets_mlops.errors import InvalidParameterError, NotFoundError, did_you_mean
from planets_mlops.knobs import MIN_IMAGE_SIZE

logger = logging.getLogger(__name__)

# A compiled pipeline is ~120 kB of YAML: PyYAML's pure-Python parser reads one in ~0.14
# CPU s, its libyaml parser (same SafeLoader constructors, same result) in ~0.03.
_IR_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_ir_documents(text: str | bytes) -> list[Any]:
    """The YAML documents of a compiled pipeline (IR), parsed by libyaml where PyYAML has it.

    Args:
        text: A package as ``planets-mlops compile`` (the KFP compiler) writes it.

    Returns:
        Its documents: the pipeline spec, then the platform spec when there is one.
    """
    return list(yaml.load_all(text, Loader=_IR_LOADER))


# section -> key -> expected Python type(s). Pipeline parameter name = f"{section}_{key}".
PARAMS_SCHEMA: dict[str, dict[str, tuple[type, ...]]] = {
    "prepare": {
        "seed": (int,),
        "split": (float, int),
        "image_size": (int, list),
        "grayscale": (bool,),
    },
    "train": {
        "seed": (int,),
        "lr": (float, int),
        "epochs": (int,),
        "conv_size": (int,),
        "dense_size": (int,),
        "batch_size": (int,),
        "output_classes": (int,),
        "guard_coverage": (float, int),
        "augment": (str,),
        "lr_schedule": (str,),
    },
    "data": {
        "repo_url": (str,),
        "rev": (str,),
        "path": (str,),
    },
}

# IR parameterType -> Python types accepted for it (bool is an int subclass: excluded).
_IR_TYPES: dict[str, tuple[type, ...]] = {
    "NUMBER_INTEGER": (int,),
    "NUMBER_DOUBLE": (float, int),
    "STRING": (str,),
    "BOOLEAN": (bool,),
    "LIST": (list,),
    "STRUCT": (dict,),
}


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types)


def square_image_size(value: Any, name: str = "prepare_image_size") -> int:
    """Reduce ``image_size`` to the single side length the pipeline takes.

    Args:
        value: An int, or a ``[height, width]`` pair as in the guide's params.yaml.
        name: Parameter name used in error messages.

    Returns:
        The side length in pixels.

    Raises:
        InvalidParameterError: Not a positive int or a square pair of positive ints.
    """
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or not all(_type_ok(v, (int,)) for v in value):
            raise InvalidParameterError(
                name,
                value,
                "an int or a [height, width] pair of ints",
                "Write e.g. image_size: [32, 32] or image_size: 32.",
            )
        if value[0] != value[1]:
            raise InvalidParameterError(
                name,
                value,
                "square (height == width)",
                f"The model takes square images: use [{value[0]}, {value[0]}] or {value[0]}.",
            )
        value = value[0]
    if not _type_ok(value, (int,)) or value < MIN_IMAGE_SIZE:
        raise InvalidParameterError(
            name,
            value,
            f"an int of at least {MIN_IMAGE_SIZE} (pixels per side)",
            "The model's 3x3 convolution and 3x3 max-pool need 5x5 inputs at least; e.g. 32.",
        )
    return int(value)


def _check_value(name: str, value: Any, types: tuple[type, ...]) -> Any:
    if name == "prepare_image_size":
        return square_image_size(value, name)
    if not _type_ok(value, types):
        raise InvalidParameterError(name, value, f"of type {_type_names(types)}")
    if float in types and isinstance(value, int):
        return float(value)
    _check_finite(name, value)
    return value


def _check_finite(name: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidParameterError(
            name, value, "a finite number", "inf and nan make training diverge or the gate meaningless."
        )


def flatten_params(doc: Mapping[str, Any], source: str = "params.yaml") -> dict[str, Any]:
    """Map the nested params.yaml shape onto flat pipeline parameter names.

    Sections (``prepare``, ``train``, ``data``) hold keys from :data:`PARAMS_SCHEMA`;
    any other top-level key is taken as an already flat name (``data_rev: v2``) and is
    checked later against the compiled pipeline's inputs.

    Args:
        doc: The parsed YAML document.
        source: Where the document came from, for error messages.

    Returns:
        Flat parameter names to typed values.

    Raises:
        InvalidParameterError: Unknown key in a section, wrong type, or a non-square
            image size.
    """
    if not isinstance(doc, Mapping):
        raise InvalidParameterError(
            source, type(doc).__name__, "a mapping of sections (prepare, train, data)"
        )
    flat: dict[str, Any] = {}
    for section, body in doc.items():
        if section not in PARAMS_SCHEMA:
            # A flat pipeline parameter (``min_improvement: 0.01``, or a STRUCT like
            # ``dvc_remote_config: {...}``); its name is checked against the pipeline.
            flat[str(section)] = body
            continue
        if not isinstance(body, Mapping):
            raise InvalidParameterError(
                f"{source} section {section}",
                body,
                f"a mapping of keys from {sorted(PARAMS_SCHEMA[section])}",
            )
        schema = PARAMS_SCHEMA[section]
        for key, value in body.items():
            if key not in schema:
                raise InvalidParameterError(
                    f"{source} key {section}.{key}",
                    value,
                    f"a key of {section!r}: one of {sorted(schema)}",
                    "Remove the key or fix its name.",
                )
            name = f"{section}_{key}"
            flat[name] = _check_value(name, value, schema[key])
    return flat


def load_params_file(path: str | Path) -> dict[str, Any]:
    """Read a params.yaml and return flat pipeline arguments.

    Args:
        path: A params.yaml with sections ``data``, ``prepare``, ``train``, ...

    Returns:
        Pipeline arguments named ``<section>_<key>`` (e.g. ``train_lr``), values checked.

    Raises:
        NotFoundError: The file does not exist.
        InvalidParameterError: The YAML is malformed or has unknown keys or bad values.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"Params file not found: {path}. Pass an existing YAML file to --params-file.")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InvalidParameterError("--params-file", str(path), "valid YAML", f"YAML error: {exc}") from exc
    return flatten_params(doc, source=str(path))


def parse_param_flag(flag: str) -> tuple[str, Any]:
    """Parse one ``--param name=value``; the value is read as a YAML scalar.

    ``train_lr=0.01`` gives a float, ``prepare_grayscale=false`` a bool,
    ``prepare_image_size=[32,32]`` a list (reduced later), ``data_rev=v2`` a string.

    Args:
        flag: The flag's value, ``NAME=VALUE``.

    Returns:
        ``(name, value)``; a value YAML cannot read is kept as the raw string.

    Raises:
        InvalidParameterError: No ``=`` or an empty name.
    """
    name, sep, raw = flag.partition("=")
    name = name.strip()
    if not sep or not name:
        raise InvalidParameterError("--param", flag, "NAME=VALUE", "e.g. --param train_epochs=20")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if value is None:
        value = raw
    return name, value


def merge_arguments(file_params: Mapping[str, Any] | None, flags: Iterable[str] = ()) -> dict[str, Any]:
    """Combine params-file values with ``--param`` flags; flags win.

    Args:
        file_params: Arguments from :func:`load_params_file`, or None.
        flags: ``NAME=VALUE`` strings from ``--param``, applied in order.

    Returns:
        The merged arguments (``prepare_image_size`` reduced to one side).

    Raises:
        InvalidParameterError: a malformed flag, or a non-square ``prepare_image_size``.
    """
    merged = dict(file_params or {})
    for flag in flags:
        name, value = parse_param_flag(flag)
        if name == "prepare_image_size":
            value = square_image_size(value)
        merged[name] = value
    return merged


def pipeline_inputs(ir: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Parameter inputs of a compiled pipeline: name -> {type, optional, default}.

    Args:
        ir: The pipeline spec document (first YAML document of a compiled file).
    """
    params = ir.get("root", {}).get("inputDefinitions", {}).get("parameters", {}) or {}
    return {
        name: {
            "type": spec.get("parameterType", "STRING"),
            "optional": bool(spec.get("isOptional", False)),
            "default": spec.get("defaultValue"),
        }
        for name, spec in params.items()
    }


def read_pipeline_spec(path: str | Path) -> dict[str, Any]:
    """Read the pipeline spec (first document) of a compiled IR YAML file.

    Args:
        path: A pipeline YAML written by ``planets-mlops compile``.

    Returns:
        The pipeline spec as a dict (with ``root``, ``components``, ...).

    Raises:
        NotFoundError: The file does not exist.
        InvalidParameterError: The file is not a compiled pipeline.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(
            f"Compiled pipeline not found: {path}. Run "
            "`planets-mlops compile` first or pass an existing file."
        )
    docs = load_ir_documents(path.read_text())
    if not docs or not isinstance(docs[0], dict) or "root" not in docs[0]:
        raise InvalidParameterError(
            "pipeline file",
            str(path),
            "a compiled KFP IR YAML",
            "Compile it with `planets-mlops compile`.",
        )
    return docs[0]


def validate_arguments(
    arguments: Mapping[str, Any], inputs: Mapping[str, Mapping[str, Any]], pipeline: str
) -> dict[str, Any]:
    """Check names and types of arguments against a compiled pipeline's inputs.

    Ints are widened to floats for ``NUMBER_DOUBLE`` inputs; a string given on the command
    line for a ``STRING`` input that YAML read as a number is turned back into a string.

    Args:
        arguments: Name -> value, e.g. from :func:`merge_arguments`.
        inputs: The pipeline's inputs, from :func:`pipeline_inputs`.
        pipeline: The pipeline's name, for the messages.

    Returns:
        The arguments, coerced to the input types.

    Raises:
        InvalidParameterError: Unknown name (lists the valid ones), wrong type, or a
            required input left unset.
    """
    valid = sorted(inputs)
    out: dict[str, Any] = {}
    for name, value in arguments.items():
        if name not in inputs:
            raise InvalidParameterError(
                "parameter",
                name,
                f"an input of pipeline {pipeline!r}: one of {valid}",
                "Fix the name in --param or --params-file." + did_you_mean(name, valid),
            )
        ir_type = inputs[name]["type"]
        types = _IR_TYPES.get(ir_type, (object,))
        if ir_type == "STRING" and not isinstance(value, str) and not isinstance(value, (dict, list)):
            value = "true" if value is True else "false" if value is False else str(value)
        if not _type_ok(value, types):
            raise InvalidParameterError(name, value, f"{ir_type} ({_type_names(types)})")
        if ir_type == "NUMBER_DOUBLE":
            value = float(value)
            _check_finite(name, value)
        if name == "prepare_image_size":
            value = square_image_size(value, name)
        out[name] = value
    missing = [n for n, spec in inputs.items() if not spec["optional"] and n not in out]
    if missing:
        raise InvalidParameterError(
            "parameters",
            missing,
            f"set for pipeline {pipeline!r}",
            "Pass them with --param NAME=VALUE.",
        )
    logger.debug("validated %d arguments for %s", len(out), pipeline)
    return out
