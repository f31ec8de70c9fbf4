"""The typed pipeline configuration (the "config schema"): YAML file -> validated pydantic model.

`load_config(path)` is the only entry point; it raises `ConfigError` with a one-line, user-facing
message for every user mistake (missing file, bad YAML, unknown key, wrong type, missing data path).
Relative paths in the file are resolved against the current working directory.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(Exception):
    """A user mistake in the configuration; the message is one line, meant to be printed as is."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def is_gcs(path: str) -> bool:
    return str(path).startswith("gs://")


class DataConfig(_Strict):
    input: str = Field(description="folder <root>/<real|synthesized>/..., a manifest CSV, or gs://...")
    split_ratios: dict[str, int] = Field(default_factory=lambda: {"train": 7, "eval": 3},
                                         description="hash buckets per split (paper: 0.7/0.3)")

    @field_validator("split_ratios")
    @classmethod
    def _splits(cls, v: dict[str, int]) -> dict[str, int]:
        if "train" not in v or "eval" not in v:
            raise ValueError("must name at least 'train' and 'eval'")
        if any(b <= 0 for b in v.values()):
            raise ValueError("bucket counts must be positive integers")
        return v


class IngestConfig(_Strict):
    neutralize_format: bool = Field(True, description="re-encode every image with one codec (see shortcuts.md)")
    codec: Literal["JPEG", "PNG"] = "JPEG"
    quality: int = Field(95, ge=1, le=100)
    max_side: int = Field(256, ge=32, description="longest side after ingestion (both classes alike)")
    max_pixels: int = Field(89_478_485, ge=1, description="decompression-bomb limit (Pillow's default)")
    dedup: bool = Field(True, description="drop exact and near duplicates (one representative per cluster)")
    near_duplicate_max_distance: int = Field(6, ge=0, le=32, description="max Hamming distance of 64-bit pHashes")
    lsh_tables: int = Field(20, ge=1, le=64, description="LSH tables (random bit samples) for near-duplicate search")
    lsh_bits: int = Field(16, ge=4, le=32, description="bits sampled per LSH table")
    feedback: str | None = Field(None, description="curator feedback file (exclude / relabel), JSONL")


class ModelConfig(_Strict):
    image_size: int = Field(224, ge=32, description="square model input; VGG16 needs >= 32")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-4, gt=0, lt=1)
    dense_units: int = Field(16, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    weights: str = Field("imagenet", description="VGG16 weights for the fine-tune: imagenet | none | /path/file.h5")
    seed: int = 42
    deterministic: bool = False

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: str) -> str:
        if v in ("imagenet", "none") or is_gcs(v):
            return v
        if not Path(v).is_file():
            raise ValueError(f"weights file {v!r} does not exist (use imagenet, none or a path to a .h5 file)")
        return str(Path(v).resolve())


class ThresholdConfig(_Strict):
    min_accuracy: float = Field(0.90, ge=0, le=1)
    min_auc: float = Field(0.95, ge=0, le=1)
    min_accuracy_gain: float = Field(0.0, ge=-1, le=1, description="candidate - baseline")
    min_auc_gain: float = Field(0.0, ge=-1, le=1, description="candidate - baseline")
    target_fpr: float = Field(0.05, gt=0, lt=1, description="calibrated threshold: FPR on real images")
    max_robustness_drop: float = Field(0.10, ge=0, le=1, description="max accuracy drop under perturbations")


class PipelineConfig(_Strict):
    pipeline_name: str = Field("synthdetect", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    runner: Literal["local"] = "local"
    pipeline_root: str = "runs/local/root"
    metadata_path: str = "runs/local/metadata.sqlite"
    registry: str = "registry"
    beam_args: list[str] = Field(default_factory=lambda: ["--direct_running_mode=in_memory",
                                                          "--direct_num_workers=1"])
    enable_cache: bool = False
    data: DataConfig
    ingest: IngestConfig = IngestConfig()
    model: ModelConfig = ModelConfig()
    thresholds: ThresholdConfig = ThresholdConfig()

    @model_validator(mode="after")
    def _check_data(self) -> "PipelineConfig":
        if not is_gcs(self.data.input) and not Path(self.data.input).exists():
            raise ValueError(f"data.input: {self.data.input!r} does not exist")
        return self

    def resolved(self) -> "PipelineConfig":
        """Absolute local paths (TFX components run with other working directories)."""
        def fix(p: str) -> str:
            return p if is_gcs(p) else str(Path(p).resolve())
        return self.model_copy(update={
            "pipeline_root": fix(self.pipeline_root),
            "metadata_path": fix(self.metadata_path),
            "registry": fix(self.registry),
            "data": self.data.model_copy(update={"input": fix(self.data.input)}),
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
        raise ConfigError(f"config file {str(p)!r} not found")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
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
