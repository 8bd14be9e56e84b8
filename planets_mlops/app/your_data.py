"""Your own images as a data repository: check a class-per-folder tree, then version it.

``planets-mlops data init FOLDER --remote URL`` (:mod:`planets_mlops.app.cli.data`) checks
the layout the pipelines expect (``FOLDER/<Class>/<image>``) before anything is written, then
builds a git + DVC repository holding it at ``data/raw``, pushes the images to the DVC remote
(a folder or ``gs://``) and, with a git remote, pushes the commit and its tag. The training
pipeline then pulls it by URL and revision (docs/your-data.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from planets_mlops.dataset import IGNORED_NAMES, IMAGE_EXTENSIONS, NESTED, index_dataset, list_classes
from planets_mlops.errors import DataError
from planets_mlops.labelstudio.labels import is_class_name

log = logging.getLogger(__name__)

MIN_PER_CLASS = 10
"""Fewest images a class may have: prepare holds a fifth out for validation, and below ten a
class's validation accuracy moves in steps of 50 %."""
ADVISED_PER_CLASS = 100


@dataclass
class Layout:
    """A checked class-per-folder tree.

    Attributes:
        root: The folder.
        class_counts: Class -> usable images.
        skipped: File (relative) -> why it is not used (not an image, undecodable).
        advice: Sentences about what would help (a small class...), printed, not refused.
    """

    root: Path
    class_counts: dict[str, int]
    skipped: dict[str, str] = field(default_factory=dict)
    advice: list[str] = field(default_factory=list)

    @property
    def images(self) -> int:
        """Usable images in all classes."""
        return sum(self.class_counts.values())


def check_layout(folder: Path, min_per_class: int = MIN_PER_CLASS) -> Layout:
    """Check that ``folder`` is ``<Class>/<image>`` with enough usable images per class.

    Args:
        folder: The tree to check.
        min_per_class: Fewest usable images a class may have.

    Returns:
        The classes with their counts, and what is skipped.

    Raises:
        DataError: Not a folder; fewer than two classes; images next to the class folders;
            a class name that cannot be a label; images in folders inside a class folder; a
            class below ``min_per_class``. The message names each problem and the fix.
    """
    folder = Path(folder)
    problems: list[str] = []
    classes = list_classes(folder)  # raises for a missing folder or no class folder
    loose = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if loose:
        shown = ", ".join(loose[:3]) + (f" and {len(loose) - 3} more" if len(loose) > 3 else "")
        problems.append(
            f"{len(loose)} image(s) directly in {str(folder)!r} ({shown}): put each image in the "
            "folder of its class, FOLDER/<Class>/<image>"
        )
    if len(classes) < 2:
        problems.append(f"one class ({classes[0]!r}): a classifier needs two or more class folders")
    bad_names = [name for name in classes if not is_class_name(name)]
    if bad_names:
        problems.append(
            f"class folder name(s) {bad_names} cannot be labels: use letters, digits, '_', '-', '.' "
            "and spaces (rename the folders)"
        )
    try:
        index = index_dataset(folder)
    except DataError as exc:
        problems.append(str(exc))
        raise DataError(_refusal(folder, problems)) from exc
    nested = sorted({str(Path(f).parent) for f, why in index.skipped if why.startswith(NESTED)})
    if nested:
        problems.append(
            f"images in folders inside class folders ({', '.join(nested[:3])}): the layout is one "
            "level, FOLDER/<Class>/<image>; move them up into their class folder, or make each a class"
        )
    counts = index.class_counts
    small = {name: n for name, n in counts.items() if n < min_per_class}
    if small:
        problems.append(
            f"class(es) with fewer than {min_per_class} usable images: "
            + ", ".join(f"{name} ({n})" for name, n in small.items())
            + ": add images, or remove the class folder"
        )
    if problems:
        raise DataError(_refusal(folder, problems))
    skipped = {
        f: why for f, why in index.skipped if not why.startswith(NESTED) and Path(f).name not in IGNORED_NAMES
    }
    layout = Layout(folder, counts, skipped)
    few = [name for name, n in counts.items() if n < ADVISED_PER_CLASS]
    if few:
        layout.advice.append(
            f"{len(few)} class(es) have fewer than {ADVISED_PER_CLASS} images ({', '.join(few[:5])}): "
            "training works, but the gate's per-class comparison needs more images to tell models apart"
        )
    if max(counts.values()) > 5 * min(counts.values()):
        layout.advice.append(
            "the largest class has more than five times the images of the smallest: expect a lower "
            "recall on the small ones (the evaluation report shows it per class)"
        )
    return layout


def _refusal(folder: Path, problems: list[str]) -> str:
    lines = "\n".join(f"  - {p}" for p in problems)
    return (
        f"{str(folder)!r} is not a class-per-folder data set ({len(problems)} problem(s)); nothing was "
        f"written:\n{lines}\nExpected FOLDER/<Class>/<image> (.jpg, .png, .gif, .bmp), two classes or "
        "more, each with enough images. See docs/your-data.md."
    )


@dataclass
class DataRepo:
    """The repository ``init_data_repo`` built.

    Attributes:
        repo: Its folder.
        commit: The commit holding the data.
        remote: The DVC remote the images were pushed to.
        data_path: Where the data is in the repository.
        tag: The tag on the commit.
        git_remote: Where the commit was pushed, or ``""``.
    """

    repo: Path
    commit: str
    remote: str
    data_path: str
    tag: str
    git_remote: str = ""


def init_data_repo(
    layout: Layout,
    repo: Path,
    remote: str,
    data_path: str = "data/raw",
    tag: str = "v1",
    git_remote: str = "",
) -> DataRepo:
    """Build the git + DVC repository of a checked tree and push it.

    Args:
        layout: From :func:`check_layout`.
        repo: A new folder for the repository (refused when it exists and is not empty).
        remote: DVC remote: a folder or ``gs://bucket/path``.
        data_path: Where the images go in the repository.
        tag: Git tag of the commit.
        git_remote: When given, the commit and tag are pushed there (``origin``).

    Returns:
        What was built.

    Raises:
        DataError: ``repo`` exists and is not empty.
    """
    from planets_mlops.datarepo import create_data_repo, git

    repo = Path(repo)
    if repo.exists() and any(repo.iterdir()):
        raise DataError(
            f"Repository folder {str(repo)!r} exists and is not empty: data init makes a new "
            "repository. Pass another --repo, or add a version to an existing one with dvc add and git."
        )
    if "://" not in remote:
        remote = str(Path(remote).resolve())
    commit = create_data_repo(layout.root, repo, remote, data_path=data_path, tag=tag)
    if git_remote:
        git(repo, "remote", "add", "origin", git_remote)
        git(repo, "push", "-q", "-u", "origin", "main")
        git(repo, "push", "-q", "origin", tag)
    return DataRepo(repo.resolve(), commit, remote, data_path, tag, git_remote)
