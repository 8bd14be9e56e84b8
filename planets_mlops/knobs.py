"""The one source of every knob's default.

Each step's parameters are a dataclass here. The logic takes them as they are; the
pipelines derive their parameter defaults from them; the components repeat them as
literals (KFP copies a lightweight component's source into the container, where these
names would not resolve), and ``tests/test_defaults.py`` compiles the IR and fails when any
component or pipeline default differs from this module. Stdlib only: the compile path
imports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from planets_mlops.errors import InvalidParameterError

if TYPE_CHECKING:
    from planets_mlops.preprocess import PreprocessConfig


# The smallest input the model can take: a 3x3 convolution (no padding) leaves side - 2,
# and the 3x3 max-pool after it needs at least 3 of those.
MIN_IMAGE_SIZE = 5

# The training augmentation sets (planets_mlops.augment names what each applies).
AUGMENT_SETS = ("none", "photometric")


def _finite(name: str, value: object, allowed: str, fix: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidParameterError(name, value, allowed, fix)


@dataclass(frozen=True)
class DataParams:
    """Where the data set comes from: a git + DVC repository at a revision."""

    rev: str = "main"
    path: str = "data/raw"
    remote: str = ""


@dataclass(frozen=True)
class PrepareParams:
    """The guide's ``prepare`` parameters.

    The suite's recipe keeps the images' colour (``grayscale=False``): colour separates
    these classes almost perfectly (see ``scripts/bench_recipe.py``). The reference
    experiment's grayscale is the ``reference`` preset (:data:`PRESETS`).
    """

    seed: int = 5241
    split: float = 0.2
    image_size: int = 32
    grayscale: bool = False
    rescale: float = 1.0 / 255.0
    shard_size: int = 512
    max_invalid_fraction: float = 0.01
    output_classes: int = 0

    def __post_init__(self) -> None:
        """Check every field.

        Raises:
            InvalidParameterError: ``split`` not in (0, 1), ``shard_size`` not positive,
                ``max_invalid_fraction`` not in [0, 1), a negative ``output_classes``, or an
                invalid ``image_size``/``rescale`` (see :class:`PreprocessConfig`).
        """
        if not 0.0 < self.split < 1.0:
            raise InvalidParameterError(
                "split",
                self.split,
                "a fraction strictly between 0 and 1",
                "It is the share of images held out for validation; the reference uses 0.2.",
            )
        if self.shard_size <= 0:
            raise InvalidParameterError("shard_size", self.shard_size, "a positive integer")
        if not 0.0 <= self.max_invalid_fraction < 1.0:
            raise InvalidParameterError(
                "max_invalid_fraction",
                self.max_invalid_fraction,
                "in [0, 1)",
            )
        if self.output_classes < 0:
            raise InvalidParameterError(
                "output_classes", self.output_classes, "0 (any) or the number of classes"
            )
        if isinstance(self.image_size, int) and 0 < self.image_size < MIN_IMAGE_SIZE:
            raise InvalidParameterError(
                "image_size",
                self.image_size,
                f"at least {MIN_IMAGE_SIZE} pixels per side",
                "The model's 3x3 convolution and 3x3 max-pool need 5x5 inputs at least; the "
                "reference uses 32.",
            )
        _finite("rescale", self.rescale, "a finite positive number", "Use 1/255.")
        # Validates image_size and rescale with the same messages serving would give.
        self.preprocess_config()

    def preprocess_config(self) -> PreprocessConfig:
        """The preprocessing these parameters ask for (validated)."""
        from planets_mlops.preprocess import PreprocessConfig

        return PreprocessConfig(image_size=self.image_size, grayscale=self.grayscale, rescale=self.rescale)


@dataclass(frozen=True)
class TrainParams:
    """The guide's ``train`` parameters plus batch size, threads, the guard and augmentation.

    ``guard_coverage`` is the share of known images the open-set guard keeps in each class:
    the validation images, as they are and under benign changes, that the model classifies
    right; each class's threshold is set to keep that share (see ``planets_mlops.guard``).
    ``augment`` names the training augmentation (``planets_mlops.augment``):
    ``"photometric"`` (benign changes of exposure, contrast, blur and noise; never colour
    balance or zoom) or ``"none"`` (the reference experiment).
    """

    lr: float = 0.001
    epochs: int = 10
    conv_size: int = 64
    dense_size: int = 128
    batch_size: int = 32
    seed: int = 5241
    output_classes: int = 0
    threads: int = 1
    guard_coverage: float = 0.99
    augment: str = "photometric"

    def __post_init__(self) -> None:
        """Check every field.

        Raises:
            InvalidParameterError: ``lr`` not positive; ``epochs``, ``conv_size``,
                ``dense_size`` or ``batch_size`` not a positive integer; a negative
                ``output_classes`` or ``threads``; ``guard_coverage`` outside (0, 1].
        """
        if self.augment not in AUGMENT_SETS:
            raise InvalidParameterError(
                "augment",
                self.augment,
                f"one of {list(AUGMENT_SETS)}",
                "'photometric' trains on benign changes of exposure, contrast, blur and noise "
                "(planets_mlops.augment); 'none' trains on the images as they are.",
            )
        if isinstance(self.guard_coverage, bool) or not 0.0 < self.guard_coverage <= 1.0:
            raise InvalidParameterError(
                "guard_coverage",
                self.guard_coverage,
                "a fraction in (0, 1]",
                "It is the share of known validation images (as they are and under benign changes) "
                "the open-set guard keeps in each class; 0.99 keeps 99 %.",
            )
        _finite("lr", self.lr, "a finite positive learning rate", "The reference uses 0.001.")
        if not self.lr > 0:
            raise InvalidParameterError(
                "lr", self.lr, "a finite positive learning rate", "The reference uses 0.001."
            )
        for name in ("epochs", "conv_size", "dense_size", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise InvalidParameterError(name, value, "a positive integer")
        if self.output_classes < 0:
            raise InvalidParameterError(
                "output_classes", self.output_classes, "0 (take it from the data) or the class count"
            )
        if self.threads < 0:
            raise InvalidParameterError("threads", self.threads, "0 (all cores) or a positive integer")


@dataclass(frozen=True)
class EvaluateParams:
    """The promotion gate (:mod:`planets_mlops.gate`).

    Attributes:
        min_improvement: Required accuracy gain over production on the images of shared
            classes; a candidate that knows more classes needs no gain.
        gate_alpha: Significance level of "worse beyond noise" (exact McNemar test,
            overall and per class).
        gate_confidence: Confidence of the paired bootstrap intervals in the verdict.
        bootstrap_resamples: Resamples of those intervals.
        bootstrap_seed: Their seed (the verdict is reproducible).
    """

    min_improvement: float = 0.0
    gate_alpha: float = 0.05
    gate_confidence: float = 0.95
    bootstrap_resamples: int = 2000
    bootstrap_seed: int = 0

    def __post_init__(self) -> None:
        """Check the gate's knobs.

        Raises:
            InvalidParameterError: ``gate_alpha`` or ``gate_confidence`` outside (0, 1),
                ``bootstrap_resamples`` not a positive integer, ``min_improvement`` not a
                finite number.
        """
        for name in ("gate_alpha", "gate_confidence"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise InvalidParameterError(name, value, "a fraction strictly between 0 and 1")
        resamples = self.bootstrap_resamples
        if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples <= 0:
            raise InvalidParameterError(
                "bootstrap_resamples", resamples, "a positive integer", "2000 is plenty."
            )
        _finite(
            "min_improvement",
            self.min_improvement,
            "a finite number (accuracy points, e.g. 0.01)",
            "Use 0.0 to promote any model at least as good as production.",
        )


@dataclass(frozen=True)
class LabelParams:
    """The Label Studio import of the ``retraining`` pipeline."""

    min_new_labels: int = 1
    publish: bool = False
    publish_branch: str = "labels"
    push_new_predictions: bool = True
    allow_new_classes: bool = False
    inbox_max_tasks: int = 0


@dataclass(frozen=True)
class ImageFetchParams:
    """Limits on downloading the image of a Label Studio task (outside input).

    Set on a pod through ``PLANETS_FETCH_MAX_BYTES``, ``PLANETS_FETCH_DEADLINE_S``,
    ``PLANETS_FETCH_MAX_REDIRECTS`` and ``PLANETS_FETCH_ALLOW_HOSTS`` (see
    ``planets_mlops.labelstudio.fetch``).

    Attributes:
        max_bytes: largest image accepted; larger ones are skipped before they are read
            whole (the serving upload limit, 10 MiB).
        deadline_s: seconds for one image, every redirect and read together.
        max_redirects: redirects followed for one image.
        allow_hosts: hosts, IP addresses or CIDR ranges (each optionally ``:port``) that
            may be fetched although they are private, loopback or link-local. Empty: none;
            the configured Label Studio server itself is always allowed.
    """

    max_bytes: int = 10 * 1024 * 1024
    deadline_s: float = 30.0
    max_redirects: int = 3
    allow_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Check every field.

        Raises:
            InvalidParameterError: a limit is not a positive (finite) number.
        """
        if not isinstance(self.max_bytes, int) or self.max_bytes <= 0:
            raise InvalidParameterError("max_bytes", self.max_bytes, "a positive number of bytes")
        if not (isinstance(self.deadline_s, (int, float)) and math.isfinite(self.deadline_s)) or (
            self.deadline_s <= 0
        ):
            raise InvalidParameterError("deadline_s", self.deadline_s, "a finite number of seconds > 0")
        if not isinstance(self.max_redirects, int) or self.max_redirects < 0:
            raise InvalidParameterError("max_redirects", self.max_redirects, "0 or a positive integer")


@dataclass(frozen=True)
class InboxParams:
    """The production inbox (:mod:`planets_mlops.inbox`): what the service keeps for labelling.

    Attributes:
        max_items: Items the inbox holds at most; later inputs are not kept until the
            retraining pipeline empties it.
        min_margin: An answer whose top two probabilities are closer than this is kept as
            ``low_margin``.
        max_image_bytes: Largest image kept.
        queue_size: Items waiting for the service's background writer; more are dropped.
    """

    max_items: int = 1000
    min_margin: float = 0.2
    max_image_bytes: int = 10 * 1024 * 1024
    queue_size: int = 64

    def __post_init__(self) -> None:
        """Check every field.

        Raises:
            InvalidParameterError: a bound that is not a positive integer, or
                ``min_margin`` outside [0, 1].
        """
        for name in ("max_items", "max_image_bytes", "queue_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidParameterError(name, value, "a positive integer")
        if isinstance(self.min_margin, bool) or not 0.0 <= self.min_margin <= 1.0:
            raise InvalidParameterError("min_margin", self.min_margin, "a number in [0, 1]")


# Evidently statistical tests that return a p-value (the drift decision corrects p-values
# for the number of columns, so distance-style tests do not fit it).
NUMERIC_DRIFT_TESTS = ("ks", "anderson", "cramer_von_mises", "mannw", "t_test", "es")
PREDICTION_DRIFT_TESTS = ("chisquare", "g_test")


@dataclass(frozen=True)
class DriftParams:
    """The drift check of the ``monitoring`` pipeline (:mod:`planets_mlops.monitoring.drift`).

    Every column (the scalar image features, the projected embedding's components, the
    predicted class) gets its own two-sample test against the reference profile. Testing
    20 columns at 0.05 each would raise a false alarm on most in-distribution windows, so
    the per-column threshold is Bonferroni's ``alpha / columns``: the chance that a window
    of in-distribution traffic raises any alarm stays below ``alpha`` whatever the
    correlation between the columns (and the image features are strongly correlated).

    Attributes:
        alpha: Family-wise false-alarm probability of one window (0.01: at most about one
            false alarm in 100 scheduled runs).
        drift_share: Share of the tested columns that must drift for a "drift" verdict
            (at least one column). Bonferroni already makes one column significant evidence,
            and a shift can move few columns (a rotation moves orientation and the
            embedding, not brightness or colour), so the default asks for one; Evidently's
            own default, 0.5, misses such shifts.
        min_records: A window (or a reference) with fewer records gets "not enough data",
            never "no drift": the chi-square test of the predicted class needs about 5
            expected records per class (10 classes), and small windows cannot rule drift out.
        numeric_test: Evidently test of the numeric columns. Kolmogorov-Smirnov: no
            assumption on the distribution, sensitive to shifts in location and shape.
        prediction_test: Evidently test of the predicted class (chi-square against the
            reference's class shares).
        window_hours: Hours of records a run reads, ending at the window's end.
        max_records: Records read at most (a bound on memory; the report says when hit).
    """

    alpha: float = 0.01
    drift_share: float = 0.05
    min_records: int = 50
    numeric_test: str = "ks"
    prediction_test: str = "chisquare"
    window_hours: int = 24
    max_records: int = 20000

    def __post_init__(self) -> None:
        """Check every field.

        Raises:
            InvalidParameterError: ``alpha`` or ``drift_share`` outside (0, 1); a count that
                is not a positive integer; a test Evidently does not offer as a p-value test.
        """
        for name in ("alpha", "drift_share"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise InvalidParameterError(
                    name,
                    value,
                    "a fraction strictly between 0 and 1",
                    "The defaults are alpha 0.01 (false alarms per run) and drift_share 0.05.",
                )
        for name in ("min_records", "window_hours", "max_records"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidParameterError(name, value, "a positive integer")
        if self.min_records > self.max_records:
            raise InvalidParameterError(
                "min_records", self.min_records, f"at most max_records ({self.max_records})",
                "Lower min_records or raise max_records.",
            )  # fmt: skip
        if self.numeric_test not in NUMERIC_DRIFT_TESTS:
            raise InvalidParameterError(
                "numeric_test", self.numeric_test, f"one of {', '.join(NUMERIC_DRIFT_TESTS)}",
                "These are Evidently's p-value tests for numeric columns; ks is the default.",
            )  # fmt: skip
        if self.prediction_test not in PREDICTION_DRIFT_TESTS:
            raise InvalidParameterError(
                "prediction_test", self.prediction_test, f"one of {', '.join(PREDICTION_DRIFT_TESTS)}",
                "These are Evidently's p-value tests for a class column; chisquare is the default.",
            )  # fmt: skip


@dataclass(frozen=True)
class AlertParams:
    """What the ``monitoring`` pipeline does when it finds drift, beyond writing the alert.

    Attributes:
        notify: POST the alert to the webhook URL of the Kubernetes Secret
            ``monitoring-webhook`` (key ``url``).
        push_to_label_studio: Turn the production inbox (the inputs the service rejected or
            was unsure of; records hold no images) into Label Studio tasks.
        start_retraining: Submit a run of the ``retraining`` pipeline through the KFP API.
        webhook_timeout_s: Seconds for the webhook call, connection and answer together.
    """

    notify: bool = False
    push_to_label_studio: bool = False
    start_retraining: bool = False
    webhook_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        """Check the timeout.

        Raises:
            InvalidParameterError: ``webhook_timeout_s`` not a finite positive number.
        """
        _finite("webhook_timeout_s", self.webhook_timeout_s, "a finite number of seconds > 0")
        if not self.webhook_timeout_s > 0:
            raise InvalidParameterError(
                "webhook_timeout_s", self.webhook_timeout_s, "a finite number of seconds > 0"
            )


@dataclass(frozen=True)
class MonitoringParams:
    """The service's prediction records (:mod:`planets_mlops.monitoring.writer`).

    Attributes:
        sample: Share of served images recorded, in (0, 1].
        batch_records: Records per object; a batch is written when it is full.
        batch_age_s: Longest a record waits before its batch is written (and the most a
            SIGKILL can lose, with the batch).
        queue_images: Images waiting for the background writer at most; more are dropped
            and counted.
    """

    sample: float = 1.0
    batch_records: int = 1000
    batch_age_s: float = 60.0
    queue_images: int = 4096

    def __post_init__(self) -> None:
        """Check every field.

        Raises:
            InvalidParameterError: a bound that is not positive, a batch of more than
                :data:`MAX_MONITORING_BATCH`, or ``sample`` outside (0, 1].
        """
        if isinstance(self.sample, bool) or not (
            isinstance(self.sample, (int, float)) and 0 < self.sample <= 1
        ):
            raise InvalidParameterError(
                "sample", self.sample, "a share in (0, 1]", "Use 1 to record every image, 0.1 for one in ten."
            )
        if isinstance(self.batch_records, bool) or not (
            isinstance(self.batch_records, int) and 1 <= self.batch_records <= MAX_MONITORING_BATCH
        ):
            raise InvalidParameterError(
                "batch_records", self.batch_records, f"an integer from 1 to {MAX_MONITORING_BATCH}",
                "Larger batches would exceed the objects' size bound.",
            )  # fmt: skip
        if isinstance(self.batch_age_s, bool) or not (
            isinstance(self.batch_age_s, (int, float)) and 0 < self.batch_age_s < math.inf
        ):
            raise InvalidParameterError(
                "batch_age_s", self.batch_age_s, "a positive, finite number of seconds"
            )
        if isinstance(self.queue_images, bool) or not (
            isinstance(self.queue_images, int) and self.queue_images > 0
        ):
            raise InvalidParameterError("queue_images", self.queue_images, "a positive integer")


# A record is about 0.6 KB: this many stay far below records.MAX_OBJECT_BYTES.
MAX_MONITORING_BATCH = 10_000


@dataclass(frozen=True)
class DeployParams:
    """Where a promoted model is served, and where the served model records its predictions.

    Attributes:
        deploy: Deploy the promoted model.
        name: Deployment and Service name.
        namespace: Namespace to serve in.
        monitoring_uri: ``gs://BUCKET/PREFIX`` for the service's prediction records
            (docs/monitoring.md); empty: none.
        monitoring_sample: Share of served images recorded, in (0, 1].
        inbox_uri: ``gs://BUCKET/PREFIX`` of the production inbox the service fills with
            the inputs it rejected or was unsure of (``PLANETS_INBOX``); empty: off.
        inbox_max_items: Items the inbox holds at most (``PLANETS_INBOX_MAX_ITEMS``).
        inbox_min_margin: Top-two margin below which an answer is kept
            (``PLANETS_INBOX_MIN_MARGIN``).
    """

    deploy: bool = False
    name: str = "planets-classifier"
    namespace: str = "planets-serving"
    monitoring_uri: str = ""
    monitoring_sample: float = 1.0
    inbox_uri: str = ""
    inbox_max_items: int = InboxParams.max_items
    inbox_min_margin: float = InboxParams.min_margin


@dataclass(frozen=True)
class RegistryParams:
    """Experiment tracking and the model registry on MLflow (:mod:`planets_mlops.registry`).

    Attributes:
        tracking: Track runs and register models; off: no MLflow server is needed and
            promotion is the evaluate step's verdict alone.
        model_name: The registered model every version goes to.
        experiment: The MLflow experiment of the runs (the KFP MLflow plugin's parent run
            is reused wherever it lives).
        allow_untracked: With ``tracking`` on and the server unreachable, continue without
            registering (the model is packaged, nothing is registered or promoted);
            otherwise such a step fails at once.
        timeout_s: Seconds for the reachability check and each tracking request.
        lock_ttl_s: A promotion lock older than this is taken over (its holder died).
        lock_wait_s: How long a promotion waits for another one's lock.
        release: When the gate promotes, package the model, move ``production`` and deploy;
            off: register the candidate and stop (a pull request's run: the merge promotes
            that version with ``planets-mlops ci promote``).
    """

    tracking: bool = False
    model_name: str = "planets-classifier"
    experiment: str = "planets"
    allow_untracked: bool = False
    timeout_s: float = 5.0
    lock_ttl_s: float = 300.0
    lock_wait_s: float = 60.0
    release: bool = True

    def __post_init__(self) -> None:
        """Check every field.

        Raises:
            InvalidParameterError: an empty or malformed model or experiment name, or a
                time that is not a finite positive number.
        """
        import re

        if not isinstance(self.model_name, str) or not re.fullmatch(
            r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}", self.model_name
        ):
            raise InvalidParameterError(
                "registered_model_name",
                self.model_name,
                "letters, digits, '.', '_' or '-', starting with a letter or digit",
                "e.g. planets-classifier.",
            )
        if not isinstance(self.experiment, str) or not self.experiment.strip():
            raise InvalidParameterError(
                "mlflow_experiment", self.experiment, "a non-empty name", "e.g. planets."
            )
        for name in ("timeout_s", "lock_ttl_s", "lock_wait_s"):
            value = getattr(self, name)
            _finite(name, value, "a finite number of seconds > 0")
            if value <= 0:
                raise InvalidParameterError(name, value, "a finite number of seconds > 0")


def defaults(params: type) -> dict[str, Any]:
    """Field name -> default of one of the dataclasses above.

    Args:
        params: One of the ``*Params`` classes of this module (the class, not an instance).

    Returns:
        Every field's default, in field order.
    """
    return {f.name: f.default for f in fields(params)}


# Pipeline parameter -> (knob dataclass, field): the default it must carry and the checks its
# value must pass. Used by the CLI's argument checks and by the defaults test.
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
    "tracking": (RegistryParams, "tracking"),
    "registered_model_name": (RegistryParams, "model_name"),
    "mlflow_experiment": (RegistryParams, "experiment"),
    "allow_untracked": (RegistryParams, "allow_untracked"),
    "release": (RegistryParams, "release"),
}


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
