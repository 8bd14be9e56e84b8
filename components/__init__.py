"""KFP components of the suite (installed as ``planets_mlops.components``): thin shells over the logic.

Every component module imports this package first (for its image, ``.images``), so in a task's
process (``python -m kfp.dsl.executor_main --executor_input ...``) it arms
:func:`planets_mlops.task_exit.end_when_written`: once the executor has written the task's
outputs, the process ends without the interpreter's teardown. Anywhere else (compiling,
tests calling ``python_func``) it does nothing.
"""

from planets_mlops.task_exit import end_when_written

end_when_written()
