"""Pull requests that train on Kubeflow, and merges that ship exactly the reviewed model.

- :func:`render_templates`: the workflow files ``planets-mlops ci init`` writes into a
  repository (GitHub Actions, or the GitLab CI twin), and the schedules file.
- :func:`record_review`: tags the version a pull request's run registered with the
  commit, pull request and pipeline version that were reviewed (``planets.ci.*``).
- :func:`reviewed_version` and :func:`merge_problems`: at merge time, the version whose
  reviewed commit is what was merged (the same commit, or the same tree) and whose data
  revision is the one the merged commit declares, with the gate's promote; anything else
  is refused with the reason, and nothing is retrained.
- :func:`promote_reviewed`: moves ``production`` to it by the registry's compare-and-set,
  expecting the production version the gate compared with.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from planets_mlops.errors import DataError, InvalidParameterError, NotFoundError, PromotionConflictError

PROVIDERS = ("github", "gitlab")
SPEC_PLACEHOLDER = "__PLANETS_MLOPS_SPEC__"
SCHEDULES_FILE = ".planets/schedules.yaml"
# Template file -> where it goes in the repository, per provider.
TEMPLATES: dict[str, dict[str, str]] = {
    "github": {
        "github/planets-pull-request.yml": ".github/workflows/planets-pull-request.yml",
        "github/planets-merge.yml": ".github/workflows/planets-merge.yml",
        "github/planets-schedules.yml": ".github/workflows/planets-schedules.yml",
        "common/schedules.yaml": SCHEDULES_FILE,
    },
    "gitlab": {
        "gitlab/gitlab-ci.yml": ".gitlab-ci.yml",
        "common/schedules.yaml": SCHEDULES_FILE,
    },
}
TAG_COMMIT = "planets.ci.commit"
TAG_PR = "planets.ci.pr"
TAG_PIPELINE_VERSION = "planets.ci.pipeline_version"
_SHA = re.compile(r"[0-9a-f]{7,64}")
_SPEC = re.compile(r"[A-Za-z0-9_.\-\[\],=<>!~+/:@ ]{1,300}")


def default_spec() -> str:
    """What the workflows install: this release of the suite with the extras CI needs."""
    from planets_mlops import __version__

    return f"planets-mlops[tracking,deploy]=={__version__}"


def render_templates(provider: str, spec: str | None = None) -> dict[str, str]:
    """The files ``ci init`` writes: repository path -> text.

    Args:
        provider: ``github`` or ``gitlab``.
        spec: The pip requirement the workflows install (default :func:`default_spec`).

    Raises:
        InvalidParameterError: an unknown provider, or a spec with characters that do not
            belong in a requirement (it is written into YAML and a shell command).
    """
    if provider not in TEMPLATES:
        raise InvalidParameterError("--provider", provider, f"one of {', '.join(PROVIDERS)}")
    spec = default_spec() if spec is None else spec
    if not _SPEC.fullmatch(spec) or '"' in spec:
        raise InvalidParameterError(
            "--install-spec",
            spec,
            "a pip requirement",
            "e.g. 'planets-mlops[tracking,deploy]==0.1.0' or '-e .'",
        )
    root = resources.files("planets_mlops.app").joinpath("ci_templates")
    return {
        target: root.joinpath(source).read_text(encoding="utf-8").replace(SPEC_PLACEHOLDER, spec)
        for source, target in TEMPLATES[provider].items()
    }


def write_templates(files: Mapping[str, str], repo: Path, force: bool = False) -> list[Path]:
    """Write ``files`` under ``repo``; an existing file is kept unless ``force``.

    Raises:
        DataError: a file exists (and ``force`` is off): nothing is written then.
    """
    targets = {Path(repo) / name: text for name, text in files.items()}
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        raise DataError(f"{', '.join(existing)} already exist(s); pass --force to overwrite.")
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(targets)


def check_commit(name: str, value: str) -> str:
    """A git commit id (7 to 64 lower-case hex digits).

    Raises:
        InvalidParameterError: anything else.
    """
    if not isinstance(value, str) or not _SHA.fullmatch(value):
        raise InvalidParameterError(
            name, value, "a git commit id (hex)", "Pass the full SHA, e.g. $GITHUB_SHA."
        )
    return value


# ----------------------------------------------------------------------------- review


def record_review(
    client: Any, model: str, kfp_run_id: str, commit: str, pr: str, pipeline_version: str
) -> str:
    """Tag the version KFP run ``kfp_run_id`` registered with what was reviewed; returns it.

    Raises:
        NotFoundError: the run registered no version.
    """
    from planets_mlops.app.review import version_of_run

    check_commit("--commit", commit)
    version = version_of_run(client, model, kfp_run_id)["version"]
    for key, value in ((TAG_COMMIT, commit), (TAG_PR, pr), (TAG_PIPELINE_VERSION, pipeline_version)):
        if value:
            client.set_model_version_tag(model, version, key, str(value))
    return str(version)


def reviewed_version(client: Any, model: str, commit: str) -> dict[str, Any]:
    """The newest version of ``model`` whose reviewed commit (``planets.ci.commit``) is ``commit``.

    Raises:
        NotFoundError: none was reviewed at that commit.
    """
    from planets_mlops.registry.registry import list_versions

    found = [v for v in list_versions(client, model) if v["tags"].get(TAG_COMMIT) == commit]
    if not found:
        raise NotFoundError(
            f"No version of {model!r} was trained for reviewed commit {commit}: the pull request's "
            "training run did not run at that commit (apply the train-model label to the pull request's "
            "last commit and let its run finish before merging). Nothing is promoted."
        )
    return found[0]


def same_tree(repo: Path, first: str, second: str) -> bool:
    """Whether two commits of the checkout ``repo`` hold the same tree.

    Raises:
        NotFoundError: a commit is not in the checkout (a shallow clone: fetch-depth 0).
    """
    if first == second:
        return True
    trees = []
    for commit in (first, second):
        done = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{commit}^{{tree}}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise NotFoundError(
                f"Commit {commit} is not in the checkout {repo}: clone with the whole history "
                "(actions/checkout fetch-depth: 0, GitLab GIT_DEPTH: 0)."
            )
        trees.append(done.stdout.strip())
    return trees[0] == trees[1]


def data_matches(tags: Mapping[str, str], params: Mapping[str, str], data_rev: str) -> bool:
    """Whether a version's data is the revision ``data_rev`` the merged commit declares.

    The run's ``data_rev`` parameter must be ``data_rev``; a commit id also matches the
    data commit the pull step recorded (a branch name is compared by name: pin a commit
    or tag in params.yaml for data that cannot move under the review).
    """
    recorded = str(tags.get("planets.data_commit", ""))
    if str(params.get("data_rev", "")) == data_rev:
        return True
    return bool(_SHA.fullmatch(data_rev) and recorded.startswith(data_rev))


def merge_problems(
    info: Mapping[str, Any],
    params: Mapping[str, str],
    *,
    merged_commit: str,
    reviewed_commit: str,
    data_rev: str,
    trees_equal: Callable[[str, str], bool],
) -> list[str]:
    """Why the version ``info`` must not be promoted for this merge ([] when it may).

    Args:
        info: The version (``registry.version_info``).
        params: Its run's parameters.
        merged_commit: The commit on main.
        reviewed_commit: The pull request's head commit the training run was reviewed at.
        data_rev: The data revision the merged commit declares (its params.yaml).
        trees_equal: Compares two commits' trees (:func:`same_tree`).
    """
    tags = info["tags"]
    problems = []
    if tags.get(TAG_COMMIT) != reviewed_commit:
        problems.append(
            f"version {info['version']} was reviewed at commit {tags.get(TAG_COMMIT) or 'none'}, "
            f"not {reviewed_commit}"
        )
    elif not trees_equal(reviewed_commit, merged_commit):
        problems.append(
            f"the merged commit {merged_commit} is not the reviewed commit {reviewed_commit} (their trees "
            "differ: the branch was not up to date with main when merged); retrain on the merged code"
        )
    if not data_matches(tags, params, data_rev):
        problems.append(
            f"version {info['version']} was trained on data revision {params.get('data_rev', '?')} "
            f"(commit {tags.get('planets.data_commit', '?')}), but the merged params.yaml declares {data_rev}"
        )
    if str(tags.get("planets.gate_promote", "")).lower() != "true":
        problems.append(f"the gate kept production for version {info['version']}: there is nothing to ship")
    if not tags.get("planets.bento_tag") or not tags.get("planets.bento_uri"):
        problems.append(
            f"version {info['version']} has no bento (its run's package step did not run): nothing to serve"
        )
    return problems


@dataclass(frozen=True)
class Shipped:
    """A promotion at merge time.

    Attributes:
        version: The version production now names.
        previous: The version it named before (None: unset).
        info: The version (``registry.version_info``).
        release: The release record.
        pr: The pull request that reviewed it.
    """

    version: str
    previous: str | None
    info: dict[str, Any]
    release: dict[str, Any]
    pr: str


def promote_reviewed(
    client: Any,
    model: str,
    *,
    merged_commit: str,
    reviewed_commit: str,
    data_rev: str,
    trees_equal: Callable[[str, str], bool],
) -> Shipped:
    """Promote the version reviewed at ``reviewed_commit`` if :func:`merge_problems` finds none.

    ``production`` moves only if it still names the version the pull request's gate compared
    with (another merge that shipped first makes this one refused: retrain against it).

    Raises:
        NotFoundError: no version was reviewed at that commit.
        PromotionConflictError: a problem (the message lists them), or production moved since
            the gate compared.
    """
    from planets_mlops.registry import registry as reg
    from planets_mlops.registry import release as rel

    check_commit("--merged-commit", merged_commit)
    check_commit("--reviewed-commit", reviewed_commit)
    reg.require_model(client, model)
    info = reviewed_version(client, model, reviewed_commit)
    params = dict(client.get_run(info["run_id"]).data.params) if info["run_id"] else {}
    problems = merge_problems(
        info,
        params,
        merged_commit=merged_commit,
        reviewed_commit=reviewed_commit,
        data_rev=data_rev,
        trees_equal=trees_equal,
    )
    if problems:
        raise PromotionConflictError(
            f"Refused to promote version {info['version']} of {model!r} for merge {merged_commit}: "
            + "; ".join(problems)
            + ". production is unchanged."
        )
    expected = info["tags"].get("planets.gate_production_version") or None
    pr = info["tags"].get(TAG_PR, "")
    move = reg.move_alias(
        client,
        model,
        reg.PRODUCTION,
        info["version"],
        expected=expected,
        why=f"merge of pull request {pr or '?'} at {merged_commit[:12]} (reviewed at {reviewed_commit[:12]})",
        by=f"merge {merged_commit[:12]}",
        kfp_run_id=info["tags"].get("planets.kfp_run_id", ""),
    )
    info = reg.version_info(client, model, info["version"])
    record = rel.release_record(move, info, params)
    rel.store_record(client, record)
    return Shipped(info["version"], move.from_version, info, record, pr)


def merged_markdown(
    shipped: Shipped, model: str, merged_commit: str, deployed: Mapping[str, Any] | None
) -> str:
    """The comment on the merged pull request: what production names now and where it serves."""
    lines = [
        f"## Shipped: `{model}` version {shipped.version} is production",
        "",
        f"Merged as {merged_commit}; production moved from version {shipped.previous or 'none'} to "
        f"{shipped.version} (release {shipped.release.get('release', '?')}), the version this pull request's "
        "run registered and the gate promoted. Nothing was retrained.",
        "",
    ]
    if deployed:
        bento = shipped.info["tags"].get("planets.bento_tag", "?")
        lines.append(
            f"Serving: endpoint revision **{deployed.get('revision', '?')}** at "
            f"{deployed.get('endpoint_url', '?')} (bento `{bento}`)."
        )
    else:
        lines.append("Not deployed by this job (no --deploy).")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- schedules file


@dataclass(frozen=True)
class ScheduleEntry:
    """One recurring run the schedules file declares."""

    name: str
    pipeline: str
    cron: str
    params: dict[str, Any]
    params_file: str = ""
    preset: str = ""
    service_account: str = ""
    pipeline_root: str = ""
    caching: str = ""
    version: str = ""


_ENTRY_KEYS = {f for f in ScheduleEntry.__dataclass_fields__}
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?")


def load_schedules(path: Path) -> tuple[str, list[ScheduleEntry]]:
    """``(experiment, entries)`` of a schedules file, every entry checked.

    Raises:
        NotFoundError: no such file.
        InvalidParameterError: not the documented shape (the message names the entry and key).
    """
    import yaml

    from planets_mlops.app.kfp_client import validate_cron

    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"Schedules file {str(path)!r} not found. `planets-mlops ci init` writes one.")
    if path.stat().st_size > 1024 * 1024:
        raise InvalidParameterError(str(path), path.stat().st_size, "a schedules file under 1 MiB")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InvalidParameterError(str(path), "unparsable YAML", "a YAML mapping", str(exc)[:300]) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("schedules", []), list):
        raise InvalidParameterError(str(path), type(doc).__name__, "a mapping with a 'schedules' list")
    experiment = str(doc.get("experiment") or "planets")
    entries, seen = [], set()
    for index, raw in enumerate(doc.get("schedules") or []):
        where = f"{path}: schedules[{index}]"
        if not isinstance(raw, dict):
            raise InvalidParameterError(where, raw, "a mapping with name, pipeline, cron")
        unknown = sorted(set(raw) - _ENTRY_KEYS)
        if unknown:
            raise InvalidParameterError(where, unknown, f"keys among {sorted(_ENTRY_KEYS)}")
        missing = [k for k in ("name", "pipeline", "cron") if not raw.get(k)]
        if missing:
            raise InvalidParameterError(where, missing, "set", "Each entry needs name, pipeline and cron.")
        name = str(raw["name"])
        if not _NAME.fullmatch(name):
            raise InvalidParameterError(f"{where}.name", name, "lower-case letters, digits and '-'")
        if name in seen:
            raise InvalidParameterError(f"{where}.name", name, "a name used once in the file")
        seen.add(name)
        params = raw.get("params") or {}
        if not isinstance(params, dict):
            raise InvalidParameterError(f"{where}.params", params, "a mapping of pipeline arguments")
        validate_cron(str(raw["cron"]))
        entries.append(
            ScheduleEntry(
                **{k: (v if k == "params" else str(v)) for k, v in raw.items() if k != "params"},
                params=dict(params),
            )
        )
    return experiment, entries


def schedule_argv(entry: ScheduleEntry, experiment: str, passthrough: list[str]) -> list[str]:
    """The ``planets-mlops schedule`` command line that makes ``entry`` live."""
    import json

    argv = ["schedule", entry.pipeline, "--cron", entry.cron, "--job-name", entry.name]
    argv += ["--experiment", experiment]
    for flag, value in (
        ("--params-file", entry.params_file),
        ("--preset", entry.preset),
        ("--service-account", entry.service_account),
        ("--pipeline-root", entry.pipeline_root),
        ("--caching", entry.caching),
        ("--version", entry.version),
    ):
        if value:
            argv += [flag, value]
    for key, value in entry.params.items():
        # --param values are read as YAML; JSON is YAML, so every type round-trips.
        argv += ["--param", f"{key}={json.dumps(value)}"]
    return argv + passthrough
