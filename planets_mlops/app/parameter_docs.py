"""docs/parameters.md: every pipeline's and component's inputs and outputs, from the compiled IR.

The descriptions are the ones the Kubeflow run form shows: KFP copies them from the
Google-style ``Args:``/``Returns:`` docstrings, whose knob lines come from
``planets_mlops.knobs``. Regenerate after changing a knob, a component or a pipeline::

    make docs        # or: .venv/bin/python -m planets_mlops.app.parameter_docs

``tests/component/test_descriptions.py`` fails when the page is out of date, and when any
input or output has no description; ``--counts`` prints how many are described, per pipeline.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from planets_mlops.app.params import load_ir_documents

PAGE = Path("docs/parameters.md")
REGENERATE = "make docs"

_TYPES = {
    "STRING": "str",
    "NUMBER_INTEGER": "int",
    "NUMBER_DOUBLE": "float",
    "BOOLEAN": "bool",
    "LIST": "list",
    "STRUCT": "dict",
}


def compile_specs(out_dir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Compile every pipeline and component to ``out_dir``.

    Returns:
        ``(pipelines, components)``: name -> pipeline spec (the IR's first document).
    """
    from planets_mlops.app.cli.source import compile_components
    from planets_mlops.pipelines.compile import compile_all

    def first(path: Path) -> dict[str, Any]:
        return load_ir_documents(path.read_text())[0]

    pipelines = {p.stem: first(p) for p in compile_all(out_dir / "pipelines")}
    components = {p.stem: first(p) for p in compile_components(out_dir / "components")}
    return pipelines, components


def _type(spec: Mapping[str, Any]) -> str:
    if "parameterType" in spec:
        return _TYPES.get(spec["parameterType"], spec["parameterType"].lower())
    title = spec.get("artifactType", {}).get("schemaTitle", "system.Artifact")
    return f"{title.removeprefix('system.')} artifact"


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(spec: Mapping[str, Any]) -> str:
    if "defaultValue" in spec:
        value = spec["defaultValue"]
        if spec.get("parameterType") == "NUMBER_INTEGER":
            value = int(value)  # the IR keeps every number as a double
        return f"`{json.dumps(value)}`"
    return "optional" if spec.get("isOptional") else "**required**"


def _table(definitions: Mapping[str, Any], with_default: bool) -> list[str]:
    entries = {**definitions.get("parameters", {}), **definitions.get("artifacts", {})}
    if not entries:
        return ["None."]
    head = "| Name | Type | Default | Description |" if with_default else "| Name | Type | Description |"
    rows = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for name, spec in entries.items():
        cells = [f"`{name}`", _type(spec)]
        if with_default:
            cells.append(_default(spec))
        cells.append(_cell(spec.get("description", "")))
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _section(
    title: str, description: str, inputs: Mapping[str, Any], outputs: Mapping[str, Any]
) -> list[str]:
    lines = [title, ""]
    if description:
        lines += [_cell(description), ""]
    lines += ["Inputs:", "", *_table(inputs, with_default=True), ""]
    lines += ["Outputs:", "", *_table(outputs, with_default=False), ""]
    return lines


def executor_components(spec: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The components of a pipeline spec that run a container (not If/ExitHandler DAGs)."""
    return {name: comp for name, comp in spec.get("components", {}).items() if "executorLabel" in comp}


def _entries(definitions: Mapping[str, Any]) -> dict[str, Any]:
    return {**definitions.get("parameters", {}), **definitions.get("artifacts", {})}


def undescribed(
    pipelines: Mapping[str, Mapping[str, Any]], components: Mapping[str, Mapping[str, Any]]
) -> tuple[list[tuple[str, str]], dict[str, list[int]]]:
    """What has no description: every root input, and every component input and output.

    Returns:
        ``(missing, counts)``: ``(where, name)`` of each input or output without a
        description, and ``where -> [described, total]`` for each pipeline's root inputs, its
        components' inputs and outputs, and the component files'.
    """
    missing: list[tuple[str, str]] = []
    counts: dict[str, list[int]] = {}

    def count(where: str, entries: Mapping[str, Any], label: str) -> None:
        tally = counts.setdefault(where, [0, 0])
        for name, entry in entries.items():
            tally[1] += 1
            if str(entry.get("description", "")).strip():
                tally[0] += 1
            else:
                missing.append((label, name))

    for pipeline, spec in pipelines.items():
        root = spec.get("root", {})
        count(
            f"pipeline {pipeline}: root inputs",
            _entries(root.get("inputDefinitions", {})),
            f"pipeline {pipeline} input",
        )
    for group, specs in (("pipeline", pipelines), ("component files", components)):
        for source, spec in specs.items():
            where = f"pipeline {source}: components" if group == "pipeline" else "component files"
            for comp, body in executor_components(spec).items():
                for section, kind in (("inputDefinitions", "inputs"), ("outputDefinitions", "outputs")):
                    count(f"{where}' {kind}", _entries(body.get(section, {})), f"{source}: {comp} {kind}")
    return missing, counts


def _compile_options() -> list[str]:
    """The ``planets-mlops compile`` flags declared as knobs (``knobs.MultiWorkerParams``)."""
    from dataclasses import fields

    from planets_mlops.app.cli.compile_ import MULTIWORKER_FLAGS
    from planets_mlops.knobs import MultiWorkerParams

    lines = [
        "## Compile-time options: training on several nodes",
        "",
        _cell(
            "Flags of `planets-mlops compile`, not run parameters: they change the compiled training "
            "and retraining pipelines (docs/scaling.md). Off by default: with `--train-nodes 1` the IR is "
            "the one above. No cluster ran a TrainJob here."
        ),
        "",
        "| Flag | Type | Default | Description |",
        "|---|---|---|---|",
    ]
    for f in fields(MultiWorkerParams):
        cells = [f"`{MULTIWORKER_FLAGS[f.name]}`", type(f.default).__name__, f"`{json.dumps(f.default)}`"]
        lines.append("| " + " | ".join([*cells, _cell(f.metadata["doc"])]) + " |")
    return [*lines, ""]


def render(pipelines: Mapping[str, Mapping[str, Any]], components: Mapping[str, Mapping[str, Any]]) -> str:
    """The parameter reference page for compiled ``pipelines`` and ``components`` (name -> spec)."""
    lines = [
        "# Parameter reference",
        "",
        "<!-- Generated from the compiled IR by `make docs` "
        "(python -m planets_mlops.app.parameter_docs); do not edit by hand. -->",
        "",
        "Every input and output of the suite's pipelines and components, with the description the",
        "Kubeflow run form shows. Knob defaults, checks and descriptions are declared once, in",
        "`planets_mlops/knobs.py`; `params.yaml` and `--param NAME=VALUE` set the pipeline inputs",
        "(README, *Parameters*). On a Kubeflow cluster the pipelines are uploaded with the suite's",
        "prefix (`planets-training`, ...; `planets-mlops upload --help`).",
        "",
        "**Upgrade note (named outputs).** Components and the training pipeline used to return one",
        "value named `Output`; each now has a named output: `evaluate-model` `promote`,",
        "`register-model` `version_registered`, `promote-model` `production_version`,",
        "`detect-drift` `drift_verdict`, `raise-alert` `outcome`, `check-new-labels`",
        "`enough_new_labels`, and the `training` pipeline `promoted`. Dashboards, queries and",
        "scripts that read a task's or run's `Output` must read the new name. Locally,",
        "`planets_mlops.app.local` patches kfp 2.17's `kfp.local`, whose `dsl.If` on a named output",
        "was silently False, so the gates (`promoted`, `drift`, `enough-new-labels`,",
        "`production-moved`) run there as on a cluster; on another kfp version it warns and",
        "patches nothing. A value that is one of a few choices is a `str` input, because KFP 2.17",
        "rejects a `Literal[...]` annotation: its knob checks the choices (the CLI before",
        'submitting, the step when it runs) and its description lists them ("One of: ...").',
        "`tests/pipeline/test_named_outputs_local.py` pins both.",
        "",
        "Pipelines: " + ", ".join(f"[`{n}`](#pipeline-{n})" for n in pipelines) + ".",
        "",
    ]
    for name, spec in pipelines.items():
        root = spec.get("root", {})
        lines += _section(
            f"## Pipeline `{name}`",
            spec.get("pipelineInfo", {}).get("description", ""),
            root.get("inputDefinitions", {}),
            root.get("outputDefinitions", {}),
        )
    lines += _compile_options()
    lines += ["## Components", ""]
    for name, spec in components.items():
        for comp in executor_components(spec).values():
            lines += _section(
                f"### `{name}`",
                spec.get("pipelineInfo", {}).get("description", "").split("\n\n")[0],
                comp.get("inputDefinitions", {}),
                comp.get("outputDefinitions", {}),
            )
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check``, compare) docs/parameters.md; 1 when ``--check`` finds it stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PAGE, help=f"default: {PAGE}")
    parser.add_argument("--check", action="store_true", help="exit 1 if the page differs")
    parser.add_argument("--counts", action="store_true", help="print described/total per pipeline and exit")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        specs = compile_specs(Path(tmp))
    if args.counts:
        missing, counts = undescribed(*specs)
        for where, (described, total) in counts.items():
            print(f"{where}: {described}/{total} described")
        return 1 if missing else 0
    text = render(*specs)
    if args.check:
        same = args.out.is_file() and args.out.read_text() == text
        print(f"{args.out} is {'up to date' if same else 'out of date: run ' + REGENERATE}")
        return 0 if same else 1
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
