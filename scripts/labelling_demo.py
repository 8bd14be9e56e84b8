#!/usr/bin/env python
"""Label Studio loop on the full bundled data, measured: stages 1, 2 and 4 of the quickstart."""

import sys

from planets_mlops.app.quickstart import main

if __name__ == "__main__":
    sys.exit(main(["--skip-serving", *sys.argv[1:]]))
