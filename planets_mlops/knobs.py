"""The one source of every knob: its default, its check and its description, together.

Each step's parameters are a dataclass here whose fields are declared with :func:`knob`:
``lr: float = knob(0.001, "Learning rate of Adam.", check=finite(positive=True))``. The
logic takes the dataclasses as they are (their ``__post_init__`` runs every field's check);
the pipelines derive their parameter defaults from them and their IR descriptions through
:func:`describe_knobs`; the components repeat the defaults as literals (KFP copies a
lightweight component's source into the container, where these names would not resolve),
take their descriptions through :func:`describe_knobs`, which also refuses a literal that
differs from its knob when the module is imported, and ``tests/component/test_defaults.py`` compiles
the IR and fails when any default differs from this module. ``docs/parameters.md`` is
generated from the compiled IR, so it reads the same descriptions. Stdlib only: the compile
path imports it.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import Field, dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

from planets_mlops.errors import InvalidParameterError

if TYPE_CHECKING:
    from planets_mlops.preprocess import PreprocessConfig


# The smallest input the model can take: a 3x3 convolution (no padding) leaves side - 2,
# and the 3x3 max-pool after it needs at least 3 of those.
MIN_IMAGE_SIZE = 5

# The training augmentation sets (planets_mlops.augment names what each applies).
AUGMENT_SETS = ("none", "photometric")

# How the learning rate moves over training (planets_mlops.train.learning_rate).
LR_SCHEDULES = ("constant", "cosine")

# Evidently statistical tests that return a p-value (the drift decision corrects p-values
# for the number of columns, so distance-style tests do not fit it).
NUMERIC_DRIFT_TESTS = ("ks", "anderson", "cramer_von_mises", "mannw", "t_test", "es")
PREDICTION_DRIFT_TESTS = ("chisquare", "g_test")

# The prefix of the suite's pipeline names on a Kubeflow cluster (planets-training, ...), so
# that they never take another team's ``training``; ``--pipeline-prefix`` or
# ``PLANETS_PIPELINE_PREFIX`` changes it (planets_mlops.app.kfp_client.pipelines).
PIPELINE_PREFIX = "planets-"

# A record is about 0.6 KB: this many stay far below records.MAX_OBJECT_BYTES.
MAX_MONITORING_BATCH = 10_000

# A check takes the name to report and the value; it raises InvalidParameterError.
Check = Callable[[str, Any], None]


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int)


def finite(
    allowed: str = "a finite number", fix: str = "", *, positive: bool = False, minimum: float | None = None
) -> Check:
    """A finite number (and above zero when ``positive``, at least ``minimum`` when given)."""

    def check(name: str, value: Any) -> None:
        if (
            not _is_number(value)
            or (positive and not value > 0)
            or (minimum is not None and not value >= minimum)
        ):
            raise InvalidParameterError(name, value, allowed, fix)

    return check


def fraction(
    allowed: str = "a fraction strictly between 0 and 1",
    fix: str = "",
    *,
    low_closed: bool = False,
    high_closed: bool = False,
) -> Check:
    """A number between 0 and 1, each end included only when asked."""

    def check(name: str, value: Any) -> None:
        above = _is_number(value) and (value >= 0.0 if low_closed else value > 0.0)
        below = _is_number(value) and (value <= 1.0 if high_closed else value < 1.0)
        if not (above and below):
            raise InvalidParameterError(name, value, allowed, fix)

    return check


def integer(
    allowed: str = "a positive integer", fix: str = "", *, minimum: int = 1, maximum: int | None = None
) -> Check:
    """An integer in ``[minimum, maximum]`` (bool is no integer here)."""

    def check(name: str, value: Any) -> None:
        if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
            raise InvalidParameterError(name, value, allowed, fix)

    return check


def matches(pattern: str, allowed: str, fix: str = "") -> Check:
    """A string that fully matches ``pattern``."""

    def check(name: str, value: Any) -> None:
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise InvalidParameterError(name, value, allowed, fix)

    return check


def knob(
    default: Any,
    doc: str,
    *,
    check: Check | None = None,
    choices: Sequence[str] = (),
    fix: str = "",
    name: str = "",
) -> Any:
    """Declare a knob: its default, its description and its check, in one place.

    Args:
        default: The default value (an immutable one: the dataclasses are frozen).
        doc: One or two sentences for the Kubeflow run form and docs/parameters.md.
        check: Raises :class:`InvalidParameterError` on a bad value (see :func:`finite`,
            :func:`fraction`, :func:`integer`, :func:`matches`).
        choices: The values allowed, when a value is one of a few (checked; listed in the
            description).
        fix: The sentence of the error message saying how to fix a value not in ``choices``.
        name: The name errors report, when it is not the field's (a pipeline input name).

    Returns:
        A dataclass field.
    """
    if choices:
        doc = f"{doc} One of: {', '.join(choices)}."
    return field(
        default=default,
        metadata={"doc": doc, "check": check, "choices": tuple(choices), "fix": fix, "name": name},
    )


class Knobs:
    """Base of the parameter dataclasses: runs every field's check, then :meth:`check_together`."""

    def __post_init__(self) -> None:
        """Check every field, then the rules that tie fields together.

        Raises:
            InvalidParameterError: a value its knob's check refuses (the message names the
                field, the value, what is allowed and how to fix it).
        """
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            label = f.metadata.get("name") or f.name
            if f.metadata.get("choices") and value not in f.metadata["choices"]:
                raise InvalidParameterError(
                    label, value, f"one of {list(f.metadata['choices'])}", f.metadata.get("fix", "")
                )
            check = f.metadata.get("check")
            if check is not None:
                check(label, value)
        self.check_together()

    def check_together(self) -> None:
        """Rules between fields (none by default)."""


def knob_fields(params: type) -> dict[str, Field]:
    """Field name -> dataclass field of one of the ``*Params`` classes."""
    return {f.name: f for f in fields(params)}


def describe(params: type, name: str) -> str:
    """The description of knob ``name`` of ``params``."""
    return str(knob_fields(params)[name].metadata.get("doc", ""))


def choices(params: type, name: str) -> tuple[str, ...]:
    """The values knob ``name`` of ``params`` may take; empty when it is not one of a few."""
    return tuple(knob_fields(params)[name].metadata.get("choices", ()))


@dataclass(frozen=True)
class DataParams(Knobs):
    """Where the data set comes from: a git + DVC repository at a revision."""

    rev: str = knob("main", "Git revision (branch, tag or commit) of the data repository to pull.")
    path: str = knob(
        "data/raw", "Folder of the data set inside the data repository (one sub-folder per class)."
    )
    remote: str = knob("", "DVC remote to pull from; empty: the repository's default remote.")


@dataclass(frozen=True)
class PrepareParams(Knobs):
    """The guide's ``prepare`` parameters.

    The suite's recipe keeps the images' colour (``grayscale=False``): colour separates
    these classes almost perfectly (see ``benchmarks/bench_recipe.py``). The reference
    experiment's grayscale is the ``reference`` preset (:data:`PRESETS`).
    """

    seed: int = knob(5241, "Seed of the train/validation split.")
    split: float = knob(
        0.2,
        "Share of the images held out for validation, in (0, 1).",
        check=fraction(fix="It is the share of images held out for validation; the reference uses 0.2."),
    )
    image_size: int = knob(
        32, f"Side in pixels the images are resized to (square, at least {MIN_IMAGE_SIZE})."
    )
    grayscale: bool = knob(False, "Convert the images to grayscale (the reference recipe); off keeps colour.")
    rescale: float = knob(
        1.0 / 255.0,
        "Factor applied to the pixel values (1/255 maps them to [0, 1]).",
        check=finite("a finite positive number", "Use 1/255."),
    )
    shard_size: int = knob(512, "Images per .npy shard of the prepared data set.", check=integer())
    max_invalid_fraction: float = knob(
        0.01,
        "Share of unreadable image files tolerated before the step fails, in [0, 1).",
        check=fraction("in [0, 1)", low_closed=True),
    )
    output_classes: int = knob(
        0,
        "Number of classes the data must have; 0: any.",
        check=integer("0 (any) or the number of classes", minimum=0),
    )

    def check_together(self) -> None:
        """The image size and the preprocessing, with the messages serving would give.

        Raises:
            InvalidParameterError: an image side below :data:`MIN_IMAGE_SIZE`, or an
                invalid ``image_size``/``rescale`` (see :class:`PreprocessConfig`).
        """
        if isinstance(self.image_size, int) and 0 < self.image_size < MIN_IMAGE_SIZE:
            raise InvalidParameterError(
                "image_size",
                self.image_size,
                f"at least {MIN_IMAGE_SIZE} pixels per side",
                "The model's 3x3 convolution and 3x3 max-pool need 5x5 inputs at least; the "
                "reference uses 32.",
            )
        self.preprocess_config()

    def preprocess_config(self) -> PreprocessConfig:
        """The preprocessing these parameters ask for (validated)."""
        from planets_mlops.preprocess import PreprocessConfig

        return PreprocessConfig(image_size=self.image_size, grayscale=self.grayscale, rescale=self.rescale)


_COVERAGE = fraction(
    "a fraction in (0, 1]",
    "It is the share of known validation images (as they are and under benign changes) "
    "the open-set guard keeps in each class; 0.99 keeps 99 %.",
    high_closed=True,
)


@dataclass(frozen=True)
class GuardParams(Knobs):
    """The open-set guard's calibration (:meth:`planets_mlops.guard.Guard.fit`)."""

    coverage: float = knob(
        0.99,
        "Share of known validation images (as they are and under benign changes) the open-set "
        "guard keeps in each class, in (0, 1]; the rest of the score range is answered 'unknown'.",
        check=_COVERAGE,
    )
    k: int = knob(1, "Nearest bank embeddings averaged in the guard's similarity.", check=integer())


@dataclass(frozen=True)
class TrainParams(Knobs):
    """The guide's ``train`` parameters plus batch size, threads, the guard and augmentation.

    ``guard_coverage`` is the share of known images the open-set guard keeps in each class:
    the validation images, as they are and under benign changes, that the model classifies
    right; each class's threshold is set to keep that share (see ``planets_mlops.guard``).
    ``augment`` names the training augmentation (``planets_mlops.augment``):
    ``"photometric"`` (benign changes of exposure, contrast, blur and noise; never colour
    balance or zoom) or ``"none"`` (the reference experiment).
    """

    lr: float = knob(
        0.001,
        "Learning rate of the Adam optimiser.",
        check=finite("a finite positive learning rate", "The reference uses 0.001.", positive=True),
    )
    epochs: int = knob(10, "Passes over the training split.", check=integer())
    conv_size: int = knob(64, "Filters of the 3x3 convolution layer.", check=integer())
    dense_size: int = knob(128, "Units of the hidden dense layer before the classifier.", check=integer())
    batch_size: int = knob(32, "Images per training step.", check=integer())
    seed: int = knob(5241, "Seed of weight initialisation, shuffling and augmentation.")
    output_classes: int = knob(
        0,
        "Classes the model outputs; 0: the data set's class count.",
        check=integer("0 (take it from the data) or the class count", minimum=0),
    )
    threads: int = knob(
        1,
        "CPU threads TensorFlow uses; 0: all cores.",
        check=integer("0 (all cores) or a positive integer", minimum=0),
    )
    # The guard's own knob (GuardParams.coverage), as training takes it.
    guard_coverage: float = knob(GuardParams.coverage, describe(GuardParams, "coverage"), check=_COVERAGE)
    augment: str = knob(
        "photometric",
        "Training augmentation: 'photometric' trains on benign changes of exposure, contrast, "
        "blur and noise (never colour balance or zoom); 'none' on the images as they are.",
        choices=AUGMENT_SETS,
        fix="'photometric' trains on benign changes of exposure, contrast, blur and noise "
        "(planets_mlops.augment); 'none' trains on the images as they are.",
    )
    lr_schedule: str = knob(
        "cosine",
        "Learning rate over training: 'cosine' decays it from lr to zero over the epochs "
        "(a steadier last epoch); 'constant' keeps lr (the reference experiment).",
        choices=LR_SCHEDULES,
        fix="'cosine' decays the learning rate to zero over the epochs; 'constant' keeps it.",
    )


# The longest TrainJob deadline: the launching task's own pod deadline (STEP_TIMEOUTS
# ["train-multiworker"] in pipelines/platform.py, 4 h) less half an hour for copying the
# shards to the shared volume and the chief's model back.
MAX_TRAINJOB_DEADLINE_S = 4 * 3600 - 30 * 60


@dataclass(frozen=True)
class MultiWorkerParams(Knobs):
    """Training on several nodes through a Kubeflow Trainer TrainJob: a compile-time option, off.

    ``planets-mlops compile --train-nodes N`` (N of 2 or more) compiles the training and
    retraining pipelines with ``train_multiworker`` in place of ``train_model``: the task
    copies the prepared shards to the ``planets-shared`` volume (mounted on it), runs a
    TrainJob of N workers (``kustomize/trainer-multiworker``) and returns the chief's model
    to the same downstream steps. ``nodes=1``, the default, leaves the pipelines as they are.
    The GPUs, CPU and memory of each worker are the training task's (``--gpu-count``,
    ``--cpu``, ``--memory``). No cluster ran it here (docs/scaling.md).
    """

    nodes: int = knob(
        1,
        "Nodes the training step trains on: 1 trains with train_model on one node (the default); "
        "2 or more runs train_multiworker, a Kubeflow Trainer TrainJob of that many workers.",
        check=integer("1 (one node, train_model) or more (a TrainJob of that many workers)"),
        name="--train-nodes",
    )
    queue: str = knob(
        "",
        "Kueue LocalQueue of the TrainJob (label kueue.x-k8s.io/queue-name); empty: none.",
        name="--train-queue",
    )
    deadline_seconds: int = knob(
        3600,
        "activeDeadlineSeconds of the TrainJob: it fails after this long.",
        check=integer(
            f"1 to {MAX_TRAINJOB_DEADLINE_S} seconds",
            "The launching task's own deadline is 4 h, half an hour of it for copying.",
            maximum=MAX_TRAINJOB_DEADLINE_S,
        ),
        name="--train-deadline-seconds",
    )
    namespace: str = knob(
        "kubeflow",
        "Namespace of the TrainJob: the pipeline's, where the planets-shared volume claim is.",
        name="--train-namespace",
    )

    @property
    def on(self) -> bool:
        """Whether training runs as a TrainJob (more than one node)."""
        return isinstance(self.nodes, int) and self.nodes > 1

    def check_together(self) -> None:
        """The TrainJob's settings apply to a TrainJob only: refused with one node.

        Raises:
            InvalidParameterError: a queue, deadline or namespace given with ``nodes=1``
                (they would be dropped without a word).
        """
        if self.on:
            return
        for f in fields(self):
            if f.name != "nodes" and getattr(self, f.name) != f.default:
                raise InvalidParameterError(
                    f.metadata.get("name") or f.name,
                    getattr(self, f.name),
                    "left at its default with one node",
                    "It is a setting of the TrainJob: add --train-nodes 2 (or more) to train on "
                    "several nodes.",
                )


@dataclass(frozen=True)
class EvaluateParams(Knobs):
    """The promotion gate (:mod:`planets_mlops.gate`)."""

    min_improvement: float = knob(
        0.0,
        "Accuracy gain over production required on the images of shared classes (may be "
        "negative); a candidate that knows more classes needs no gain.",
        check=finite(
            "a finite number (accuracy points, e.g. 0.01)",
            "Use 0.0 to promote any model at least as good as production.",
        ),
    )
    gate_alpha: float = knob(
        0.05,
        "Significance level of 'worse than production beyond noise' (exact McNemar test, "
        "overall and per class).",
        check=fraction(),
    )
    gate_confidence: float = knob(
        0.95, "Confidence of the paired bootstrap intervals in the verdict.", check=fraction()
    )
    bootstrap_resamples: int = knob(
        2000, "Resamples of the bootstrap intervals.", check=integer(fix="2000 is plenty.")
    )
    bootstrap_seed: int = knob(0, "Seed of the bootstrap (the verdict is reproducible).")


@dataclass(frozen=True)
class LabelParams(Knobs):
    """The Label Studio import of the ``retraining`` pipeline."""

    min_new_labels: int = knob(1, "New labels needed to retrain; with fewer the run stops after the import.")
    publish: bool = knob(
        False, "Commit the merged data set to publish_branch of the data repository and push it with DVC."
    )
    publish_branch: str = knob("labels", "Branch of the data repository the merged data set is published to.")
    push_new_predictions: bool = knob(
        True, "Push the new model's predictions to the project's unlabelled tasks (pre-annotations)."
    )
    allow_new_classes: bool = knob(
        False,
        "Accept labels that are not yet a class (the model then learns a new class); off: the step fails.",
    )
    inbox_max_tasks: int = knob(0, "Tasks made from the production inbox at most; 0: all.")


@dataclass(frozen=True)
class ImageFetchParams(Knobs):
    """Limits on downloading the image of a Label Studio task (outside input).

    Set on a pod through ``PLANETS_FETCH_MAX_BYTES``, ``PLANETS_FETCH_DEADLINE_S``,
    ``PLANETS_FETCH_MAX_REDIRECTS`` and ``PLANETS_FETCH_ALLOW_HOSTS`` (see
    ``planets_mlops.labelstudio.fetch``).
    """

    max_bytes: int = knob(
        10 * 1024 * 1024,
        "Largest image accepted; larger ones are skipped before they are read whole (the "
        "serving upload limit).",
        check=integer("a positive number of bytes"),
    )
    deadline_s: float = knob(
        30.0,
        "Seconds for one image, every redirect and read together.",
        check=finite("a finite number of seconds > 0", positive=True),
    )
    max_redirects: int = knob(
        3, "Redirects followed for one image.", check=integer("0 or a positive integer", minimum=0)
    )
    allow_hosts: tuple[str, ...] = knob(
        (),
        "Hosts, IP addresses or CIDR ranges (each optionally :port) that may be fetched although "
        "they are private, loopback or link-local; the configured Label Studio server is always allowed.",
    )


@dataclass(frozen=True)
class InboxParams(Knobs):
    """The production inbox (:mod:`planets_mlops.inbox`): what the service keeps for labelling."""

    max_items: int = knob(
        1000,
        "Items the inbox holds at most; later inputs are not kept until the retraining pipeline empties it.",
        check=integer(),
    )
    min_margin: float = knob(
        0.2,
        "An answer whose top two probabilities are closer than this is kept as low_margin, in [0, 1].",
        check=fraction("a number in [0, 1]", low_closed=True, high_closed=True),
    )
    max_image_bytes: int = knob(10 * 1024 * 1024, "Largest image kept.", check=integer())
    queue_size: int = knob(
        64, "Items waiting for the service's background writer; more are dropped.", check=integer()
    )


@dataclass(frozen=True)
class DriftParams(Knobs):
    """The drift check of the ``monitoring`` pipeline (:mod:`planets_mlops.monitoring.drift`).

    Every column (the scalar image features, the projected embedding's components, the
    predicted class) gets its own two-sample test against the reference profile. Testing
    20 columns at 0.05 each would raise a false alarm on most in-distribution windows, so
    the per-column threshold is Bonferroni's ``alpha / columns``: the chance that a window
    of in-distribution traffic raises any alarm stays below ``alpha`` whatever the
    correlation between the columns (and the image features are strongly correlated).

    ``drift_share``: Bonferroni already makes one column significant evidence, and a shift
    can move few columns (a rotation moves orientation and the embedding, not brightness or
    colour), so the default asks for one; Evidently's own default, 0.5, misses such shifts.
    ``min_records``: the chi-square test of the predicted class needs about 5 expected
    records per class (10 classes), and small windows cannot rule drift out.
    """

    alpha: float = knob(
        0.01,
        "Family-wise false-alarm probability of one window, Bonferroni-corrected over the columns "
        "(0.01: about one false alarm in 100 scheduled runs).",
        check=fraction(fix="The defaults are alpha 0.01 (false alarms per run) and drift_share 0.05."),
    )
    drift_share: float = knob(
        0.05,
        "Share of the tested columns that must drift for a 'drift' verdict (at least one column).",
        check=fraction(fix="The defaults are alpha 0.01 (false alarms per run) and drift_share 0.05."),
    )
    min_records: int = knob(
        50,
        "A window (or reference) with fewer records gets 'not enough data', never 'no drift'.",
        check=integer(),
    )
    numeric_test: str = knob(
        "ks",
        "Evidently test of the numeric columns (ks: Kolmogorov-Smirnov, no assumption on the distribution).",
        choices=NUMERIC_DRIFT_TESTS,
        fix="These are Evidently's p-value tests for numeric columns; ks is the default.",
    )
    prediction_test: str = knob(
        "chisquare",
        "Evidently test of the predicted class against the reference's class shares.",
        choices=PREDICTION_DRIFT_TESTS,
        fix="These are Evidently's p-value tests for a class column; chisquare is the default.",
    )
    window_hours: int = knob(24, "Hours of records a run reads, ending at the window's end.", check=integer())
    max_records: int = knob(
        20000, "Records read at most (a bound on memory; the report says when it is hit).", check=integer()
    )

    def check_together(self) -> None:
        """``min_records`` at most ``max_records``.

        Raises:
            InvalidParameterError: more records asked for than are read.
        """
        if self.min_records > self.max_records:
            raise InvalidParameterError(
                "min_records", self.min_records, f"at most max_records ({self.max_records})",
                "Lower min_records or raise max_records.",
            )  # fmt: skip


@dataclass(frozen=True)
class AlertParams(Knobs):
    """What the ``monitoring`` pipeline does when it finds drift, beyond writing the alert."""

    notify: bool = knob(
        False,
        "On drift, POST the alert to the webhook URL of the Kubernetes Secret monitoring-webhook (key url).",
    )
    push_to_label_studio: bool = knob(
        False,
        "On drift, turn the production inbox (inputs the service rejected or was unsure of) "
        "into Label Studio tasks.",
    )
    start_retraining: bool = knob(
        False, "On drift, submit a run of the retraining pipeline through the KFP API."
    )
    webhook_timeout_s: float = knob(
        10.0,
        "Seconds for the webhook call, connection and answer together.",
        check=finite("a finite number of seconds > 0", positive=True),
    )
    retraining_pipeline: str = knob(
        f"{PIPELINE_PREFIX}retraining",
        "Name of the uploaded retraining pipeline on the cluster (the suite's prefix + retraining; "
        "planets-mlops schedule sets it from --pipeline-prefix).",
    )
    retraining_cooldown_hours: float = knob(
        24.0,
        "A retraining run for the same data, production model and parameters that started less "
        "than this long ago (or still runs) means no new one: one drift episode or batch of new "
        "labels starts at most one retraining.",
        check=finite("a finite number of hours >= 0", minimum=0.0),
    )


@dataclass(frozen=True)
class MonitoringParams(Knobs):
    """The service's prediction records (:mod:`planets_mlops.monitoring.writer`)."""

    sample: float = knob(
        1.0,
        "Share of served images recorded, in (0, 1].",
        check=fraction(
            "a share in (0, 1]", "Use 1 to record every image, 0.1 for one in ten.", high_closed=True
        ),
    )
    batch_records: int = knob(
        1000,
        "Records per object; a batch is written when it is full.",
        check=integer(
            f"an integer from 1 to {MAX_MONITORING_BATCH}",
            "Larger batches would exceed the objects' size bound.",
            maximum=MAX_MONITORING_BATCH,
        ),
    )
    batch_age_s: float = knob(
        60.0,
        "Longest a record waits before its batch is written (and the most a SIGKILL can lose).",
        check=finite("a positive, finite number of seconds", positive=True),
    )
    queue_images: int = knob(
        4096,
        "Images waiting for the background writer at most; more are dropped and counted.",
        check=integer(),
    )


@dataclass(frozen=True)
class DeployParams(Knobs):
    """Where a promoted model is served, and where the served model records its predictions."""

    deploy: bool = knob(False, "Deploy the promoted model to Kubernetes.")
    name: str = knob("planets-classifier", "Deployment and Service name of the served model.")
    namespace: str = knob("planets-serving", "Namespace the model is served in.")
    monitoring_uri: str = knob(
        "", "gs://BUCKET/PREFIX for the service's prediction records (docs/monitoring.md); empty: none."
    )
    monitoring_sample: float = knob(1.0, "Share of served images recorded, in (0, 1].")
    inbox_uri: str = knob(
        "",
        "gs://BUCKET/PREFIX of the production inbox the service fills with the inputs it rejected "
        "or was unsure of (PLANETS_INBOX), read by the retraining pipeline's inbox_uri; empty: off. "
        "The serving identity needs create rights there.",
    )
    inbox_max_items: int = knob(
        InboxParams.max_items, "Items the inbox holds at most (PLANETS_INBOX_MAX_ITEMS)."
    )
    inbox_min_margin: float = knob(
        InboxParams.min_margin, "Top-two margin below which an answer is kept (PLANETS_INBOX_MIN_MARGIN)."
    )


_SECONDS = finite("a finite number of seconds > 0", positive=True)


@dataclass(frozen=True)
class RegistryParams(Knobs):
    """Experiment tracking and the model registry on MLflow (:mod:`planets_mlops.registry`)."""

    tracking: bool = knob(
        False,
        "Track runs and register models in MLflow; off: no MLflow server is needed and promotion "
        "is the evaluate step's verdict alone.",
    )
    model_name: str = knob(
        "planets-classifier",
        "The MLflow registered model every version goes to.",
        check=matches(
            r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}",
            "letters, digits, '.', '_' or '-', starting with a letter or digit",
            "e.g. planets-classifier.",
        ),
        name="registered_model_name",
    )
    experiment: str = knob(
        "planets",
        "MLflow experiment of the runs (the KFP MLflow plugin's parent run is reused wherever it lives).",
        check=matches(r"(?s).*\S.*", "a non-empty name", "e.g. planets."),
        name="mlflow_experiment",
    )
    allow_untracked: bool = knob(
        False,
        "With tracking on and the server unreachable, continue without registering (the model is "
        "packaged, nothing is registered or promoted); off: the step fails at once.",
    )
    timeout_s: float = knob(
        5.0, "Seconds for the reachability check and each tracking request.", check=_SECONDS
    )
    lock_ttl_s: float = knob(
        300.0, "A promotion lock older than this is taken over (its holder died).", check=_SECONDS
    )
    lock_wait_s: float = knob(60.0, "How long a promotion waits for another one's lock.", check=_SECONDS)
    release: bool = knob(
        True,
        "When the gate promotes, package the model, move the production alias and deploy; off: "
        "register the candidate and stop (a pull request's run: the merge promotes that version).",
    )


def defaults(params: type) -> dict[str, Any]:
    """Field name -> default of one of the dataclasses above.

    Args:
        params: One of the ``*Params`` classes of this module (the class, not an instance).

    Returns:
        Every field's default, in field order.
    """
    return {f.name: f.default for f in fields(params)}


# Pipeline parameter -> (knob dataclass, field): the default it must carry, the checks its
# value must pass and its description. Used by the CLI's argument checks, the pipelines'
# descriptions and the defaults test.
PIPELINE_KNOBS: dict[str, tuple[type, str]] = {
    "data_rev": (DataParams, "rev"),
    "data_path": (DataParams, "path"),
    "dvc_remote": (DataParams, "remote"),
    **{f"prepare_{name}": (PrepareParams, name) for name in defaults(PrepareParams)},
    **{f"train_{name}": (TrainParams, name) for name in defaults(TrainParams)},
    "min_improvement": (EvaluateParams, "min_improvement"),
    "gate_alpha": (EvaluateParams, "gate_alpha"),
    "deploy": (DeployParams, "deploy"),
    "serving_name": (DeployParams, "name"),
    "serving_namespace": (DeployParams, "namespace"),
    "serving_monitoring_uri": (DeployParams, "monitoring_uri"),
    "serving_monitoring_sample": (DeployParams, "monitoring_sample"),
    "serving_inbox_uri": (DeployParams, "inbox_uri"),
    "min_new_labels": (LabelParams, "min_new_labels"),
    "publish_labels": (LabelParams, "publish"),
    "publish_branch": (LabelParams, "publish_branch"),
    "push_new_predictions": (LabelParams, "push_new_predictions"),
    "allow_new_classes": (LabelParams, "allow_new_classes"),
    "inbox_max_tasks": (LabelParams, "inbox_max_tasks"),
    "drift_alpha": (DriftParams, "alpha"),
    "drift_share": (DriftParams, "drift_share"),
    "min_records": (DriftParams, "min_records"),
    "numeric_test": (DriftParams, "numeric_test"),
    "prediction_test": (DriftParams, "prediction_test"),
    "window_hours": (DriftParams, "window_hours"),
    "max_records": (DriftParams, "max_records"),
    "notify": (AlertParams, "notify"),
    "push_to_label_studio": (AlertParams, "push_to_label_studio"),
    "start_retraining": (AlertParams, "start_retraining"),
    "retraining_pipeline": (AlertParams, "retraining_pipeline"),
    "retraining_cooldown_hours": (AlertParams, "retraining_cooldown_hours"),
    "tracking": (RegistryParams, "tracking"),
    "registered_model_name": (RegistryParams, "model_name"),
    "mlflow_experiment": (RegistryParams, "experiment"),
    "allow_untracked": (RegistryParams, "allow_untracked"),
    "release": (RegistryParams, "release"),
}


F = TypeVar("F", bound=Callable[..., Any])
_ARG_LINE = re.compile(r"^ {4}(\w+)(?: \([^)]*\))?:")


def _args_section(lines: list[str]) -> tuple[int, int] | None:
    """``(first, end)`` line indexes of the Args section's entries, or None."""
    if "Args:" not in lines:
        return None
    first = lines.index("Args:") + 1
    end = first
    while end < len(lines) and (not lines[end] or lines[end][0].isspace()):
        end += 1
    while end > first and not lines[end - 1].strip():
        end -= 1
    return first, end


def describe_knobs(*sources: type | Mapping[str, tuple[type, str]]) -> Callable[[F], F]:
    """Add the knobs' descriptions to a component's or pipeline's ``Args:`` docstring.

    KFP copies a function's Google-style ``Args:``/``Returns:`` descriptions into the IR,
    where the Kubeflow run form shows them. The docstring in the source describes the
    artifacts, the outputs and the inputs that are no knob; this adds one line for each
    parameter that is a knob, from the knob's declaration, and refuses a literal default
    that differs from it. Put it under ``@dsl.component``/``@dsl.pipeline``.

    Args:
        sources: ``*Params`` classes (a parameter named like a field is that knob; the first
            class that has the name wins) or mappings of parameter name to (class, field),
            like :data:`PIPELINE_KNOBS`.

    Returns:
        A decorator returning the same function with its ``__doc__`` completed.

    Raises:
        ValueError: a parameter's default differs from its knob's (when decorating).
    """

    def decorate(func: F) -> F:
        knobs: dict[str, tuple[type, str]] = {}
        for source in sources:
            pairs = (
                source.items()
                if isinstance(source, Mapping)
                else ((n, (source, n)) for n in defaults(source))
            )
            for name, pair in pairs:
                knobs.setdefault(name, pair)
        lines = inspect.cleandoc(func.__doc__ or "").splitlines()
        section = _args_section(lines)
        documented = set()
        if section:
            documented = {
                m.group(1) for line in lines[section[0] : section[1]] if (m := _ARG_LINE.match(line))
            }
        added = []
        for name, parameter in inspect.signature(func).parameters.items():
            if name not in knobs:
                continue
            params, field_name = knobs[name]
            default = defaults(params)[field_name]
            if parameter.default is not inspect.Parameter.empty and parameter.default != default:
                raise ValueError(
                    f"{func.__name__}({name}={parameter.default!r}): the default of knob "
                    f"{params.__name__}.{field_name} is {default!r}. Change the literal to match "
                    "planets_mlops.knobs."
                )
            if name not in documented:
                added.append(f"    {name}: {describe(params, field_name)}")
        if added:
            if section:
                lines[section[1] : section[1]] = added
            else:
                at = next((i for i, line in enumerate(lines) if line in ("Returns:", "Raises:")), len(lines))
                block = ["Args:", *added, ""]
                if at == len(lines):
                    block = ["", *block[:-1]]
                lines[at:at] = block
        func.__doc__ = "\n".join(lines)
        return func

    return decorate


# Named sets of pipeline arguments (flat names, as the pipelines take them). ``suite`` is
# the defaults above; ``reference`` is the reference experiment's chapter 2.5 recipe,
# spelt out in full so that it stays the reference whatever the defaults become.
PRESETS: dict[str, dict[str, Any]] = {
    "suite": {},
    "reference": {
        "prepare_seed": 5241,
        "prepare_split": 0.2,
        "prepare_image_size": 32,
        "prepare_grayscale": True,
        "train_lr": 0.001,
        "train_epochs": 10,
        "train_conv_size": 64,
        "train_dense_size": 128,
        "train_batch_size": 32,
        "train_seed": 5241,
        "train_augment": "none",
        "train_lr_schedule": "constant",
    },
}


def preset_arguments(name: str) -> dict[str, Any]:
    """The pipeline arguments of the preset ``name`` (a copy).

    Raises:
        InvalidParameterError: not a name of :data:`PRESETS`.
    """
    if name not in PRESETS:
        raise InvalidParameterError(
            "preset", name, f"one of {sorted(PRESETS)}", "Use --preset reference or suite."
        )
    return dict(PRESETS[name])


def preset_params(name: str) -> tuple[PrepareParams, TrainParams]:
    """The preset ``name`` as the prepare and train steps' parameters.

    Raises:
        InvalidParameterError: not a name of :data:`PRESETS`.
    """
    arguments = preset_arguments(name)

    def section(prefix: str) -> dict[str, Any]:
        return {key.removeprefix(prefix): value for key, value in arguments.items() if key.startswith(prefix)}

    return PrepareParams(**section("prepare_")), TrainParams(**section("train_"))
