"""``planets-mlops data init``: a class-per-folder tree checked, versioned and pushed.

Real git, real DVC, a local-folder DVC remote and a bare git repository as the git remote;
the pushed repository is pulled back with the pipeline's own pull logic.
"""

import shutil
import subprocess

import pytest

from planets_mlops.app import cli
from planets_mlops.app.your_data import check_layout
from planets_mlops.errors import DataError
from tests.support.fixtures.data import copy_subset


@pytest.fixture
def images(tmp_path):
    return copy_subset(tmp_path / "my-images", per_class=12)


def test_a_good_tree_is_counted(images):
    layout = check_layout(images)
    assert layout.class_counts == {"Earth": 12, "Jupiter": 12, "Moon": 12}
    assert layout.skipped == {}
    assert any("fewer than 100 images" in line for line in layout.advice)


def break_layout(root, how):
    if how == "loose image":
        shutil.copy(next((root / "Earth").iterdir()), root / "stray.jpg")
    elif how == "nested":
        (root / "Moon" / "old").mkdir()
        shutil.copy(next((root / "Moon").glob("*.jpg")), root / "Moon" / "old" / "x.jpg")
    elif how == "one class":
        shutil.rmtree(root / "Jupiter")
        shutil.rmtree(root / "Moon")
    elif how == "small class":
        for path in sorted((root / "Jupiter").iterdir())[3:]:
            path.unlink()
    elif how == "bad name":
        (root / "Earth").rename(root / "#Earth")
    elif how == "empty class":
        (root / "Pluto").mkdir()


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("loose image", "1 image(s) directly in"),
        ("nested", "images in folders inside class folders (Moon/old)"),
        ("one class", "one class ('Earth'): a classifier needs two or more class folders"),
        ("small class", "fewer than 10 usable images: Jupiter (3)"),
        ("bad name", "class folder name(s) ['#Earth'] cannot be labels"),
        ("empty class", "Pluto' has no valid image"),
    ],
)
def test_bad_layouts_are_refused_with_the_problem_and_the_fix(images, how, message):
    break_layout(images, how)
    with pytest.raises(DataError) as exc:
        check_layout(images)
    assert message in str(exc.value) and "nothing was written" in str(exc.value)


def test_data_init_refuses_a_bad_layout_with_exit_2_and_writes_nothing(images, tmp_path, capsys):
    break_layout(images, "nested")
    break_layout(images, "loose image")
    repo = tmp_path / "repo"
    code = cli.main(["data", "init", str(images), "--remote", str(tmp_path / "store"), "--repo", str(repo)])
    err = capsys.readouterr().err
    assert code == 2 and "(2 problem(s))" in err
    assert not repo.exists() and not (tmp_path / "store").exists()


def test_data_init_builds_pushes_and_the_pipeline_pulls_it(images, tmp_path, capsys):
    from planets_mlops.pull import pull_dataset

    (images / "Moon" / "notes.txt").write_text("not an image")
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    store, repo = tmp_path / "store", tmp_path / "repo"
    argv = [
        "data",
        "init",
        str(images),
        "--remote",
        str(store),
        "--repo",
        str(repo),
        "--git-remote",
        str(bare),
    ]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "36 images in 3 classes: Earth 12, Jupiter 12, Moon 12" in err
    assert "Moon/notes.txt: not an image file" in err
    assert f"--data-repo {bare} --data-rev v1 --data-path data/raw" in out
    assert any(store.rglob("*")), "the images are in the DVC remote"
    pulled = pull_dataset(str(bare), "v1", "data/raw", tmp_path / "pulled")
    assert pulled.class_counts == {"Earth": 12, "Jupiter": 12, "Moon": 12}
    # A second init into the same folder is refused: it makes new repositories only.
    code = cli.main(["data", "init", str(images), "--remote", str(store), "--repo", str(repo)])
    assert code == 2 and "exists and is not empty" in capsys.readouterr().err
