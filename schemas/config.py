"""The typed pipeline configuration (the "config schema"): YAML file -> validated pydantic model.

`load_config(path)` is the only entry point; it raises `ConfigError` with a one-line, user-facing
message for every user mistake (missing file, bad YAML, unknown key, wrong type, missing data path).
Relative paths in the file are resolved against the current working directory.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal, cast, overload

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator


class ConfigError(Exception):
    """A user mistake in the configuration; the message is one line, meant to be printed as is."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def is_gcs(path: str) -> bool:
    return str(path).startswith("gs://")


SPLIT_NAME_RE = r"[A-Za-z][A-Za-z0-9_]{0,63}"


class DataConfig(_Strict):
    input: str = Field(description="folder <root>/<real|synthesized>/..., a manifest CSV, or gs://...")
    split_ratios: dict[str, int] = Field(default_factory=lambda: {"train": 7, "eval": 3},
                                         description="hash buckets per split (paper: 0.7/0.3)")

    @field_validator("split_ratios")
    @classmethod
    def _splits(cls, v: dict[str, int]) -> dict[str, int]:
        if "train" not in v or "eval" not in v:
            raise ValueError("must name at least 'train' and 'eval'")
        for name in v:  # split names become folder names (Split-<name>) and TFX split names
            if str(name).startswith("holdout_"):
                raise ValueError(f"split name {name!r}: the prefix holdout_ is kept for evaluation.holdout_sets")
            if not re.fullmatch(SPLIT_NAME_RE, str(name)):
                raise ValueError(f"split name {name!r} must be a plain identifier (letters, digits, _; "
                                 "starting with a letter; at most 64 characters)")
        if any(b <= 0 for b in v.values()):
            raise ValueError("bucket counts must be positive integers")
        return v


class IngestConfig(_Strict):
    """Ingestion options. Also the options object of the ingestion code itself (one definition of
    each default): `IngestConfig(**kw)` validates, `IngestConfig.from_dict(d)` reads recorded options."""
    neutralize_format: bool = Field(True, description="re-encode every image with one codec (see shortcuts.md)")
    codec: Literal["JPEG", "PNG"] = "JPEG"
    quality: int = Field(95, ge=1, le=100)
    max_side: int = Field(256, ge=0, description="longest side after ingestion (both classes alike); "
                          "0 keeps native resolution")
    max_pixels: int = Field(89_478_485, ge=1, description="decompression-bomb limit (Pillow's default)")
    max_file_bytes: int = Field(256 * 2 ** 20, ge=1, description="larger files are quarantined as too_large "
                                "without being read")
    allowed_roots: tuple[str, ...] = Field((), description="folders (or gs:// prefixes) that manifest rows and "
                                           "symlinks may point into, besides the input's own folder")
    background: tuple[int, int, int] = Field((255, 255, 255), description="RGB behind transparent pixels")
    dedup: bool = Field(True, description="drop exact and near duplicates (one representative per cluster)")
    near_duplicate_max_distance: int = Field(6, ge=0, le=32, description="max Hamming distance of 64-bit pHashes")
    near_duplicate_max_color_diff: float = Field(8.0, ge=0, le=255, description="near duplicates must also agree "
                                                 "in colour: max mean difference of 4x4 RGB thumbnails, in levels "
                                                 "(255: off)")
    lsh_tables: int = Field(32, ge=1, le=64, description="LSH tables (random bit samples) for near-duplicate search; "
                            "32 x 16 bits find a pair at distance 6 with probability 0.9994")
    lsh_bits: int = Field(16, ge=4, le=32, description="bits sampled per LSH table")
    workers: int = Field(0, ge=0, le=256, description="local ingestion processes (Beam DirectRunner "
                         "multi-processing); 0: one per CPU core")
    feedback: str | None = Field(None, description="curator feedback file (exclude / relabel), JSONL")

    @field_validator("max_side")
    @classmethod
    def _max_side(cls, v: int) -> int:
        if 0 < v < 32:
            raise ValueError("must be 0 (native size) or at least 32")
        return v

    @field_validator("background")
    @classmethod
    def _background(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(not 0 <= c <= 255 for c in v):
            raise ValueError("RGB values must be 0..255")
        return v

    @field_validator("allowed_roots")
    @classmethod
    def _roots(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(r.rstrip("/") if is_gcs(r) else str(Path(r).resolve()) for r in v)

    @model_validator(mode="after")
    def _native_needs_neutralisation(self) -> IngestConfig:
        # raw mode keeps the published bytes at their native size already; there max_side only
        # bounds the decode for the duplicate hashes (JPEG draft scaling), which needs a size
        if self.max_side == 0 and not self.neutralize_format:
            raise ValueError("max_side: 0 (native size) is for neutralize_format: true; raw mode already "
                             "keeps the published bytes at native size, keep max_side > 0 there")
        return self

    @field_validator("feedback")
    @classmethod
    def _feedback(cls, v: str | None) -> str | None:
        if v is None or is_gcs(v):
            return v
        if not Path(v).is_file():
            raise ValueError(f"feedback file {v!r} does not exist")
        return str(Path(v).resolve())

    @classmethod
    def from_dict(cls, d: dict | None) -> IngestConfig:
        """Options recorded by an earlier ingestion (summary, model.json): unknown keys are ignored
        and files named in them are not required to exist any more."""
        known = {k: v for k, v in (d or {}).items() if k in cls.model_fields and v is not None}
        for k in ("background", "allowed_roots"):
            if k in known:
                known[k] = tuple(known[k])
        feedback = known.pop("feedback", None)
        return cls.model_validate(known).model_copy(update={"feedback": feedback})


class ModelConfig(_Strict):
    # Integer settings are strict: YAML `true`, `1.0` or `1.0e+18` is a mistake, not a number of epochs.
    # Bounds: image_size <= 1024 (VGG16's conv base holds 1.2 GiB of float32 activations per image
    # there, forward only; ingestion keeps images at ingest.max_side, 256 px by default, so more only
    # upsamples); batch_size <= 4096 (predict's --batch-size limit; at 224 px such a batch holds
    # ~232 GiB of activations, more than one accelerator host has).
    image_size: StrictInt = Field(224, ge=32, le=1024, description="square model input; VGG16 needs >= 32")
    input_mode: Literal["resize", "crop"] = Field(
        "resize", description="resize: the whole image resized to image_size (the paper); crop: image_size crops "
        "at native resolution (random in training, centre or eval_crops grid in evaluation and serving)")
    input_filter: Literal["none", "npr", "highpass"] = Field(
        "none", description="network input: none (the image, the paper), npr (x - up(down(x)), Tan et al. 2024) or "
        "highpass (SRM residuals): artifact-focused inputs, applied in training and serving alike")
    eval_crops: Literal[1, 5, 9] = Field(1, description="crop mode: mean score over 1 (centre), 5 (centre + "
                                         "corners) or 9 (3x3 grid) crops in evaluation and serving")
    epochs: StrictInt = Field(10, ge=1)
    batch_size: StrictInt = Field(32, ge=1, le=4096)
    learning_rate: float = Field(1e-4, gt=0, lt=1)
    dense_units: StrictInt = Field(16, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    weights: str = Field("imagenet", description="VGG16 weights for the fine-tune: imagenet | none | /path/file.h5")
    seed: StrictInt = Field(42, ge=0, le=2**32 - 1, description="NumPy/TF seeds take 0..2^32-1")
    deterministic: bool = False
    # augmentation against shortcuts (training only, both classes alike)
    augment: bool = Field(True, description="random JPEG re-compression, blur, crop, flip in training")
    augment_prob: float = Field(0.5, ge=0, le=1, description="probability of JPEG re-compression and of blur")
    # options beyond the paper (off by default)
    l2: float = Field(0.0, ge=0, description="L2 penalty on the head's Dense kernels")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    early_stopping_patience: StrictInt = Field(0, ge=0,
                                               description="stop when eval AUC stalls this many epochs (0: off)")
    lr_schedule: Literal["constant", "cosine"] = "constant"
    # hardware
    strategy: Literal["default", "mirrored", "tpu"] = Field("default", description="tf.distribute strategy")
    tpu_address: str | None = Field(None, description="TPU name/address for strategy: tpu")
    mixed_precision: bool = Field(False, description="mixed_float16 on GPU, mixed_bfloat16 on TPU")
    xla: bool = Field(False, description="jit_compile the training step")

    @model_validator(mode="after")
    def _crops(self) -> ModelConfig:
        if self.eval_crops != 1 and self.input_mode != "crop":
            raise ValueError(f"eval_crops: {self.eval_crops} needs input_mode: crop")
        return self

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: str) -> str:
        if v in ("imagenet", "none") or is_gcs(v):
            return v
        if not Path(v).is_file():
            raise ValueError(f"weights file {v!r} does not exist (use imagenet, none or a path to a .h5 file)")
        return str(Path(v).resolve())


class HoldoutSet(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,40}$", description="becomes the split holdout_<name>")
    input: str = Field(description="labelled folder, manifest or gs:// prefix, in the formats of data.input")


class LeaveOut(_Strict):
    field: Literal["generator", "source", "content"]
    value: str | list[str] = Field(min_length=1, description="one value, or a list (a generator family with its "
                                   "collection's photos spans several sources)")
    name: str = Field("left_out", pattern=r"^[a-z][a-z0-9_]{0,40}$", description="its held-out set's name")


class EvaluationConfig(_Strict):
    """Sets the models are evaluated on but never trained on (docs/results/generalisation.md)."""
    holdout_sets: list[HoldoutSet] = Field(default_factory=list, description="held-out sets, ingested by the "
                                           "same code as data.input; duplicates of training images are dropped "
                                           "and counted as leaked_into_training")
    leave_out: LeaveOut | None = Field(None, description="move every training input whose field equals value "
                                       "into a held-out set of its own (train on the others, test on it)")

    @model_validator(mode="after")
    def _unique(self) -> EvaluationConfig:
        names = self.holdout_names()
        if len(set(names)) != len(names):
            raise ValueError(f"held-out set names must be unique, got {names}")
        return self

    def holdout_names(self) -> list[str]:
        return [h.name for h in self.holdout_sets] + ([self.leave_out.name] if self.leave_out else [])

    def ingest_spec(self) -> dict:
        """What ingestion needs (packed into ImageExampleGen's custom config)."""
        return {"holdout_sets": [h.model_dump() for h in self.holdout_sets],
                "leave_out": self.leave_out.model_dump() if self.leave_out else None}


class ThresholdConfig(_Strict):
    min_accuracy: float = Field(0.90, ge=0, le=1)
    min_auc: float = Field(0.95, ge=0, le=1)
    min_accuracy_gain: float = Field(0.0, ge=-1, le=1, description="candidate - baseline")
    min_auc_gain: float = Field(0.0, ge=-1, le=1, description="candidate - baseline")
    target_fpr: float = Field(0.05, gt=0, lt=1, description="calibrated threshold: FPR on real images")
    max_robustness_drop: float = Field(0.10, ge=0, le=1, description="max accuracy drop under perturbations")
    min_holdout_auc: float | dict[str, float] | None = Field(
        None, description="AUC the candidate must reach on every held-out set (a number) or per set ({name: AUC})")
    max_generalisation_gap: float | None = Field(
        None, ge=0, le=1, description="max in-distribution AUC minus held-out AUC, on every held-out set")
    # champion/challenger: the candidate against the model serving now (the registry's `production`)
    min_accuracy_gain_over_production: float = Field(
        0.0, ge=-1, le=1, description="candidate - production accuracy on the eval split (0: not worse)")
    min_auc_gain_over_production: float = Field(
        0.0, ge=-1, le=1, description="candidate - production AUC on the eval split (0: not worse)")
    min_holdout_auc_gain_over_production: float | None = Field(
        0.0, ge=-1, le=1, description="candidate - production AUC on every held-out set (None: not gated)")

    @field_validator("min_holdout_auc")
    @classmethod
    def _holdout_auc(cls, v):
        values = v.values() if isinstance(v, dict) else [] if v is None else [v]
        if any(not 0 <= x <= 1 for x in values):
            raise ValueError("AUC values must be in [0, 1]")
        return v


# --- Google Cloud (runner: vertex). Identities only: no keys, tokens or passwords in config files;
# credentials come from Application Default Credentials / the service account the job runs as.
GPU_TYPES = ("NVIDIA_TESLA_T4", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_P4",
             "NVIDIA_TESLA_A100", "NVIDIA_A100_80GB", "NVIDIA_L4", "NVIDIA_H100_80GB")
TPU_TYPES = ("TPU_V2", "TPU_V3")
_SECRET_HINTS = ("key_file", "keyfile", "credential", "password", "passwd", "token", "secret", "private_key")
_IMAGE_RE = r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})$"


def _no_secrets(args: list[str]) -> list[str]:
    for a in args:
        if any(h in a.lower() for h in _SECRET_HINTS):
            raise ValueError(f"{a.split('=')[0]!r} looks like a credential: secrets never go in config "
                             "(use Application Default Credentials or the service account)")
    return args


@overload
def _gcs(v: str) -> str: ...
@overload
def _gcs(v: None) -> None: ...
def _gcs(v: str | None) -> str | None:
    if v is not None and not is_gcs(v):
        raise ValueError(f"must be a gs:// path, got {v!r}")
    return v.rstrip("/") if v else v


class VertexImages(_Strict):
    cpu: str = Field(pattern=_IMAGE_RE, description="pipeline image (infra/Dockerfile): every component, "
                     "Dataflow workers, and the trainers when no accelerator is configured")
    gpu: str | None = Field(None, pattern=_IMAGE_RE, description="training image for NVIDIA accelerators "
                            "(infra/Dockerfile.gpu); default: cpu")
    tpu: str | None = Field(None, pattern=_IMAGE_RE, description="training image for TPU accelerators (required "
                            "with a TPU_* accelerator_type)")


class VertexTrainingConfig(_Strict):
    """The worker pool of the Vertex AI custom job each Trainer runs as (both trainers alike)."""
    machine_type: str = Field("n1-standard-8", pattern=r"^[a-z0-9][a-z0-9-]*$")
    # Literal of the tuples above, spelled out at run time (pydantic validates it; mypy cannot evaluate it)
    accelerator_type: Literal[GPU_TYPES + TPU_TYPES] | None = "NVIDIA_TESLA_T4"  # type: ignore[valid-type]
    accelerator_count: int = Field(1, ge=0, le=16)
    boot_disk_size_gb: int = Field(100, ge=10)

    @model_validator(mode="after")
    def _accelerator(self) -> VertexTrainingConfig:
        if self.accelerator_type and self.accelerator_count < 1:
            raise ValueError("accelerator_count must be >= 1 when accelerator_type is set")
        if not self.accelerator_type and self.accelerator_count:
            raise ValueError("accelerator_count must be 0 without an accelerator_type")
        return self


class DataflowConfig(_Strict):
    """Beam components (ImageExampleGen, StatisticsGen, Transform, Evaluator) on Dataflow."""
    enabled: bool = Field(True, description="false: Beam DirectRunner inside each component's container")
    temp_location: str | None = Field(None, description="gs://; default <vertex.pipeline_root>/dataflow/tmp")
    staging_location: str | None = Field(None, description="gs://; default <vertex.pipeline_root>/dataflow/staging")
    machine_type: str = Field("n1-standard-4", pattern=r"^[a-z0-9][a-z0-9-]*$")
    max_num_workers: int = Field(4, ge=1)
    disk_size_gb: int = Field(50, ge=10)
    subnetwork: str | None = Field(None, description="regions/REGION/subnetworks/NAME (a full URL also works)")
    use_public_ips: bool = True
    extra_args: list[str] = Field(default_factory=list, description="more Beam/Dataflow pipeline args")

    @field_validator("temp_location", "staging_location")
    @classmethod
    def _gcs_paths(cls, v: str | None) -> str | None:
        return _gcs(v)

    @field_validator("extra_args")
    @classmethod
    def _extra(cls, v: list[str]) -> list[str]:
        return _no_secrets(v)


class ScheduleConfig(_Strict):
    cron: str = Field("0 3 * * 1", description="5-field cron (default: Mondays 03:00); a TZ=ZONE or CRON_TZ=ZONE "
                                               "prefix overrides time_zone")
    time_zone: str = Field("Etc/UTC", pattern=r"^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", description="IANA time zone")
    max_concurrent_runs: int = Field(1, ge=1, le=100)
    max_runs: int | None = Field(None, ge=1, description="stop after this many runs (default: unlimited)")
    display_name: str | None = None

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        zone, expr = split_cron_tz(v)
        return f"TZ={zone} {expr}" if zone else expr

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return check_time_zone(v)


def check_time_zone(zone: str) -> str:
    """An IANA time zone name (zoneinfo), as Vertex AI schedules accept it."""
    import zoneinfo
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time zone {zone!r} is not an IANA time zone (e.g. Europe/Berlin, Etc/UTC)") from None
    return zone


def split_cron_tz(v: str) -> tuple[str | None, str]:
    """`TZ=Europe/Berlin 0 3 * * 1` / `CRON_TZ=…` (the prefix Vertex AI accepts) or a plain 5-field
    cron -> (zone or None, checked 5-field cron)."""
    zone = None
    head, _, rest = v.strip().partition(" ")
    for prefix in ("TZ=", "CRON_TZ="):
        if head.startswith(prefix):
            zone, v = check_time_zone(head[len(prefix):]), rest
    return zone, check_cron(v)


CRON_FIELDS = {"minute": "0-59", "hour": "0-23", "day-of-month": "1-31", "month": "1-12 or JAN-DEC",
               "day-of-week": "0-7 or SUN-SAT"}


def check_cron(v: str) -> str:
    """A 5-field cron expression, checked field by field with croniter; the error names the bad field."""
    fields = v.split()
    if len(fields) != 5 or not all(re.fullmatch(r"[0-9A-Za-z*,/?-]+", f) for f in fields):
        raise ValueError(f"cron {v!r} must have 5 fields: minute hour day-of-month month day-of-week")
    from croniter import croniter
    for i, (name, allowed) in enumerate(CRON_FIELDS.items()):
        probe = ["*"] * 5
        probe[i] = fields[i]
        if not croniter.is_valid(" ".join(probe)):
            raise ValueError(f"cron {v!r}: the {name} field {fields[i]!r} is not valid ({allowed}; "
                             "lists a,b, ranges a-b, steps */n)")
    expr = " ".join(fields)
    if not croniter.is_valid(expr):
        raise ValueError(f"cron {v!r} is not a valid cron expression")
    return expr


class VertexConfig(_Strict):
    project: str = Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$", description="Google Cloud project id")
    region: str = Field("us-central1", pattern=r"^[a-z]+-[a-z]+[0-9]+$")
    service_account: str = Field(description="the identity pipeline, Dataflow and training jobs run as "
                                 "(an email; never a key file)")
    pipeline_root: str = Field(description="gs:// root of the pipeline's artifacts on Vertex")
    images: VertexImages
    training: VertexTrainingConfig = VertexTrainingConfig()
    dataflow: DataflowConfig = DataflowConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    display_name: str | None = Field(None, description="pipeline job display name (default: pipeline_name)")
    labels: dict[str, str] = Field(default_factory=dict, description="labels on pipeline jobs and schedules")
    network: str | None = Field(None, description="projects/NUMBER/global/networks/NAME to peer jobs with")

    @field_validator("service_account")
    @classmethod
    def _sa(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*@[a-z0-9-]+\.iam\.gserviceaccount\.com", v):
            raise ValueError(f"must be a service account email (NAME@PROJECT.iam.gserviceaccount.com), got {v!r}; "
                             "secrets never go in config (no key files)")
        return v

    @field_validator("pipeline_root")
    @classmethod
    def _root(cls, v: str) -> str:
        return _gcs(v)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", k) or not re.fullmatch(r"[a-z0-9_-]{0,63}", str(val)):
                raise ValueError(f"label {k}={val!r}: keys and values are lowercase letters, digits, _ and -")
        return v

    @model_validator(mode="after")
    def _images(self) -> VertexConfig:
        t = self.training.accelerator_type
        if t in TPU_TYPES and not self.images.tpu:
            raise ValueError(f"images.tpu is required with training.accelerator_type {t}")
        return self

    def trainer_image(self) -> str:
        t = self.training.accelerator_type
        if t in TPU_TYPES:
            return cast(str, self.images.tpu)   # set: _images requires it with a TPU accelerator
        if t in GPU_TYPES:
            return self.images.gpu or self.images.cpu
        return self.images.cpu

    def dataflow_temp(self) -> str:
        return self.dataflow.temp_location or f"{self.pipeline_root}/dataflow/tmp"

    def dataflow_staging(self) -> str:
        return self.dataflow.staging_location or f"{self.pipeline_root}/dataflow/staging"


class PipelineConfig(_Strict):
    pipeline_name: str = Field("synthdetect", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    runner: Literal["local", "vertex"] = "local"
    pipeline_root: str = "runs/local/root"
    metadata_path: str = "runs/local/metadata.sqlite"
    registry: str = "registry"
    promote: Literal["auto", "manual"] = Field(
        "auto", description="auto: a blessed candidate that beat production (or there was none) becomes "
                            "`production`; manual: it is pushed with `latest` only, a person promotes it "
                            "(`synthdetect registry promote`). Also written `registry: {location: …, promote: …}`")
    beam_args: list[str] = Field(default_factory=lambda: ["--direct_running_mode=in_memory",
                                                          "--direct_num_workers=1"])
    enable_cache: bool = False
    data: DataConfig
    ingest: IngestConfig = IngestConfig()
    model: ModelConfig = ModelConfig()
    thresholds: ThresholdConfig = ThresholdConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    vertex: VertexConfig | None = Field(None, description="Google Cloud settings (runner: vertex)")

    @model_validator(mode="before")
    @classmethod
    def _registry_mapping(cls, data):
        """`registry: {location: PATH, promote: auto|manual}` is the same as `registry: PATH` + `promote:`."""
        if isinstance(data, dict) and isinstance(data.get("registry"), dict):
            reg = dict(data["registry"])
            unknown = sorted(set(reg) - {"location", "promote"})
            if unknown or "location" not in reg:
                raise ValueError(f"registry: a path, or a mapping with location (and promote); got keys {sorted(reg)}")
            if "promote" in reg and "promote" in data and data["promote"] != reg["promote"]:
                raise ValueError("registry.promote and promote name two policies: give one")
            data = {**data, "registry": reg["location"], **({"promote": reg["promote"]} if "promote" in reg else {})}
        return data

    @field_validator("beam_args")
    @classmethod
    def _beam(cls, v: list[str]) -> list[str]:
        return _no_secrets(v)

    @model_validator(mode="after")
    def _check_crop_size(self) -> PipelineConfig:
        """Crop mode trains on native pixels: ingestion must not shrink images below the crop."""
        side, size = self.ingest.max_side, self.model.image_size
        if self.model.input_mode == "crop" and self.ingest.neutralize_format and 0 < side < size:
            raise ValueError(f"ingest.max_side: {side} is below model.image_size {size} with model.input_mode: crop; "
                             f"set ingest.max_side: 0 (native size) or at least {size}")
        return self

    @model_validator(mode="after")
    def _check_data(self) -> PipelineConfig:
        if self.runner == "vertex":
            return self._check_vertex()
        if not is_gcs(self.data.input) and not Path(self.data.input).exists():
            raise ValueError(f"data.input: {self.data.input!r} does not exist")
        for h in self.evaluation.holdout_sets:
            if not is_gcs(h.input) and not Path(h.input).exists():
                raise ValueError(f"evaluation.holdout_sets: {h.name}: input {h.input!r} does not exist")
        return self._check_holdout_thresholds()

    def _check_holdout_thresholds(self) -> PipelineConfig:
        per_set = self.thresholds.min_holdout_auc
        if isinstance(per_set, dict):
            unknown = sorted(set(per_set) - set(self.evaluation.holdout_names()))
            if unknown:
                raise ValueError(f"thresholds.min_holdout_auc names {unknown}, which are not held-out sets "
                                 f"(evaluation: {self.evaluation.holdout_names() or 'none'})")
        return self

    def _check_vertex(self) -> PipelineConfig:
        """On Vertex every path is read inside a container: data, registry and weights must be on GCS."""
        if self.vertex is None:
            raise ValueError("runner vertex needs a vertex: section (see configs/vertex.yaml)")
        if not is_gcs(self.data.input):
            raise ValueError(f"data.input: must be a gs:// path with runner vertex, got {self.data.input!r}")
        for h in self.evaluation.holdout_sets:
            if not is_gcs(h.input):
                raise ValueError(f"evaluation.holdout_sets: {h.name}: input must be a gs:// path with runner vertex")
        self._check_holdout_thresholds()
        if not (is_gcs(self.registry) or self.registry.startswith("vertex://")):
            raise ValueError(f"registry: must be gs://… or vertex://… with runner vertex, got {self.registry!r}")
        if self.model.weights not in ("imagenet", "none") and not is_gcs(self.model.weights):
            raise ValueError(f"model.weights: must be imagenet, none or a gs:// path with runner vertex, "
                             f"got {self.model.weights!r}")
        return self

    def resolved(self) -> PipelineConfig:
        """Absolute local paths (TFX components run with other working directories)."""
        def fix(p: str) -> str:
            return p if is_gcs(p) or p.startswith("vertex://") else str(Path(p).resolve())
        return self.model_copy(update={
            "pipeline_root": fix(self.pipeline_root),
            "metadata_path": fix(self.metadata_path),
            "registry": fix(self.registry),
            "data": self.data.model_copy(update={"input": fix(self.data.input)}),
            "evaluation": self.evaluation.model_copy(update={"holdout_sets": [
                h.model_copy(update={"input": fix(h.input)}) for h in self.evaluation.holdout_sets]}),
        })


def _one_line(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def load_config(path: str | os.PathLike, overrides: dict | None = None) -> PipelineConfig:
    """Read and validate a YAML config. `overrides` is a nested dict merged over the file."""
    p = Path(path)
    if not p.is_file():
        where = (str(p.resolve()) if p.is_absolute()
                 else f"{p.resolve()}: relative to the working directory {os.getcwd()}")
        what = ("is a directory, not a file" if p.is_dir() else
                "is not a regular file (a FIFO, socket or device)" if p.exists() else "not found")
        raise ConfigError(f"config file {str(p)!r} {what} (looked for {where}); pass --config PATH")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        byte = e.object[e.start:e.start + 1]
        raise ConfigError(f"config file {str(p)!r} is not UTF-8 text (byte {e.start}: {byte!r}); "
                          "save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"config file {str(p)!r} cannot be read ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"config file {str(p)!r} is not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(p)!r} must be a mapping of keys to values")
    if overrides:
        raw = _merge(raw, overrides)
    try:
        return PipelineConfig.model_validate(raw).resolved()
    except ValidationError as e:
        raise ConfigError(f"invalid config {str(p)!r}: {_one_line(e)}") from None


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
