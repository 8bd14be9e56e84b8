"""The GPU image's lock is derived from the one lock: same versions for every shared package."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;]+)", re.MULTILINE)


def _pins(path: Path) -> dict[str, str]:
    return {name.lower().replace("_", "-"): version for name, version in PIN.findall(path.read_text())}


def test_every_dependency_is_pinned_exactly():
    for path in (ROOT / "requirements.lock", ROOT / "images/requirements-gpu.lock"):
        requirements = [
            line for line in path.read_text().splitlines() if line and not line.startswith((" ", "#"))
        ]
        assert requirements and all("==" in line for line in requirements), path


def test_gpu_lock_matches_the_main_lock():
    main = _pins(ROOT / "requirements.lock")
    gpu = _pins(ROOT / "images/requirements-gpu.lock")
    assert gpu["tensorflow"] == main["tensorflow-cpu"]
    assert "tensorflow-cpu" not in gpu
    shared = set(main) & set(gpu)
    assert {name: (main[name], gpu[name]) for name in shared if main[name] != gpu[name]} == {}
    added = set(gpu) - set(main)
    assert added and all(name.startswith(("nvidia-", "tensorflow")) for name in added), sorted(added)
    assert "pytest" not in gpu  # runtime only, no dev tools
