"""Pipeline version names (``<package version>-<short git commit>``) and stored specs."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

from planets_mlops import __version__
from planets_mlops.app import kfp_client as kc
from planets_mlops.app.cli import caching
from planets_mlops.app.cli.output import say
from planets_mlops.errors import InvalidParameterError


def git_short_commit(cwd: Path | None = None) -> tuple[str, bool]:
    """``(short commit, dirty)`` of the checkout at ``cwd``.

    Raises:
        InvalidParameterError: Not a git checkout, or no commit yet.
    """
    from planets_mlops.datarepo import git

    where = cwd or Path.cwd()
    try:
        commit = git(where, "rev-parse", "--short=7", "HEAD")
        dirty = bool(git(where, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError) as exc:
        raise InvalidParameterError(
            "version name",
            None,
            "derived from the git commit",
            "Run inside the git checkout with at least one commit, or pass --version-name.",
        ) from exc
    return commit, dirty


def default_version_name(package: Path | None = None) -> str:
    """``<package version>-<short git commit>``, plus ``-dirty-<digest>`` on a dirty checkout.

    With uncommitted edits the commit does not name the code, so the version also names the
    compiled ``package`` (8 hex digits of its sha256): an edited pipeline becomes a new
    version instead of silently reusing the one uploaded from the clean commit, and
    uploading the same edits twice still changes nothing.

    Raises:
        InvalidParameterError: Not a git checkout, or a dirty one and no ``package``.
    """
    commit, dirty = git_short_commit()
    name = f"{__version__}-{commit}"
    if not dirty:
        return name
    if package is None:
        raise InvalidParameterError(
            "version name", name, "a clean checkout, or a compiled package to name",
            "Commit the changes, or pass --version-name.",
        )  # fmt: skip
    digest = hashlib.sha256(Path(package).read_bytes()).hexdigest()[:8]
    say(f"warning: uncommitted changes; this compile is version {name}-dirty-{digest}, not {name}")
    return f"{name}-dirty-{digest}"


def version_spec(version: Any, where: str) -> dict[str, Any]:
    """The pipeline spec stored with an uploaded ``version`` (``where`` names it).

    Raises:
        InvalidParameterError: The version carries no spec.
    """
    spec = kc.spec_of(version.pipeline_spec)
    if spec is None:
        raise InvalidParameterError(
            "pipeline version",
            where,
            "one with a pipeline spec",
            "Re-upload it with `planets-mlops upload`.",
        )
    return spec


def uncached_version(
    client: Any, name: str, version: Any, version_name: str, out_dir: Path
) -> tuple[str, str]:
    """``(pipeline_id, version_id)`` of ``<version_name>-caching-off``, uploaded if missing.

    Its spec is the stored spec of ``version`` with no task caching (see :mod:`.caching`);
    the platform settings travel with it. Rerunning reuses the uploaded one.
    """
    variant = version_name + caching.OFF_SUFFIX
    package = caching.write_without_cache(
        caching.package_documents(version.pipeline_spec), out_dir / f"{name}-{variant}.yaml"
    )
    pipeline_id, version_id, uploaded = kc.upload_version(client, package, name, variant)
    if uploaded:
        say(f"uploaded {name} version {variant} (no task caches)")
    return pipeline_id, version_id
