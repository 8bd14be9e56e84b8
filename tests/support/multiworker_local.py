"""One worker of a local multi-worker cluster: ``python tests/support/multiworker_local.py
PREPARED MODEL_DIR TF_CONFIG_JSON``.

Run twice, side by side, by tests/servers/test_multiworker.py with a localhost
``TF_CONFIG``: the same :func:`planets_mlops.multiworker.run_worker` the Trainer runtime's
pods run, with the cluster given instead of derived from JobSet hostnames. Prints the
worker's training metadata as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(prepared: str, model_dir: str, config: str) -> None:
    from planets_mlops.knobs import TrainParams
    from planets_mlops.multiworker import run_worker

    params = TrainParams(epochs=2, conv_size=8, dense_size=16, lr=0.01, batch_size=16)
    result = run_worker(Path(prepared), Path(model_dir), params, json.loads(config), keep_scratch=True)
    print(json.dumps({"metadata": result.metadata(), "history": result.history}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
