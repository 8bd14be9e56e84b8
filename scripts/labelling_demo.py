#!/usr/bin/env python
"""Label Studio loop on the full bundled data, measured: see planets_mlops.labelstudio.demo.main."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planets_mlops.labelstudio.demo import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
