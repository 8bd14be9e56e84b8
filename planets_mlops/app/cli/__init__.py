"""``planets-mlops``: compile, upload, run and schedule the pipelines on Kubeflow.

Progress goes to stderr, results (IDs, paths, tables) to stdout. Exit codes:

= ===========================================================================
0 success
1 any other failure (a KFP API error, a compile error, a bug)
2 usage or bad input: unknown option, unknown or mistyped parameter, malformed cron,
  URI or params file
3 cannot connect or not authorised: unreachable host, TLS, 401/403, expired token
4 not found: unknown pipeline name, missing file, pipeline/version/experiment not on
  the server, missing gs:// object
= ===========================================================================

``kfp`` is imported inside the commands only, so ``--help`` and argument errors are fast.

Modules, one per command plus the shared parts (as the ``kfp`` CLI is laid out):

- :mod:`.entry`: the root parser and :func:`main` (errors to exit codes).
- :mod:`.output`: exit codes, progress lines, tables, error reports with secrets scrubbed.
- :mod:`.options`: the option groups commands share (output, connection, run settings)
  and what they resolve to.
- :mod:`.arguments`: pipeline arguments from the flags, checked all at once (names,
  types, and values by the steps' own rules) before any request.
- :mod:`.caching`: ``--caching``, applied to the pipeline spec at every level.
- :mod:`.source`: the pipelines and components the CLI knows, and compiling them.
- :mod:`.versions`: version names from the git checkout.
- :mod:`.compile_`, :mod:`.upload`, :mod:`.run`, :mod:`.schedule`, :mod:`.status`: one
  command each, with ``register(subparsers, parents)`` and ``handle(args)``.
"""

from planets_mlops.app.cli.entry import build_parser, main
from planets_mlops.app.cli.output import (
    EXIT_CONNECTION,
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    say,
)
from planets_mlops.app.cli.source import (
    PipelineSource,
    compile_components,
    discover_components,
    pipeline_source,
)
from planets_mlops.app.cli.status import run_summary
from planets_mlops.app.cli.versions import default_version_name, git_short_commit

__all__ = [
    "EXIT_CONNECTION",
    "EXIT_ERROR",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "PipelineSource",
    "build_parser",
    "compile_components",
    "default_version_name",
    "discover_components",
    "git_short_commit",
    "main",
    "pipeline_source",
    "run_summary",
    "say",
]
