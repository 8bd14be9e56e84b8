"""``python -m planets_mlops.app.cli``: the same as the ``planets-mlops`` script."""

import sys

from planets_mlops.app.cli.entry import main

sys.exit(main())
