"""What many test modules share: the CLI, a tiny pipeline config, the release gate held open."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
CLI = str(Path(sys.executable).parent / "synthdetect")

# thresholds every tiny model clears: the run is blessed and pushed whatever 1 epoch at 32 px learns
OPEN_GATE = {"min_accuracy": 0.0, "min_auc": 0.0, "min_accuracy_gain": -1.0, "min_auc_gain": -1.0,
             "max_robustness_drop": 1.0}


def cli(*args, cwd: Path | str, timeout: float = 1800, env: dict | None = None) -> subprocess.CompletedProcess:
    """`synthdetect ARGS…` in `cwd`, output captured as text."""
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=env)


def tiny_config(tmp: Path, name: str = "pipeline.yaml", data: Path | str = SAMPLE, thresholds: dict | None = None,
                **model) -> Path:
    """configs/local.yaml with every output under `tmp`, `data` as input, 32 px, 1 epoch, no
    pretrained weights, deterministic; `model` overrides model settings. Returns the written path."""
    cfg = yaml.safe_load((REPO / "configs" / "local.yaml").read_text())
    cfg.update(pipeline_root=str(tmp / "root"), metadata_path=str(tmp / "mlmd.sqlite"),
               registry=str(tmp / "registry"), thresholds=dict(OPEN_GATE if thresholds is None else thresholds))
    cfg["data"]["input"] = str(data)
    cfg["model"].update(image_size=32, epochs=1, batch_size=16, weights="none", deterministic=True, **model)
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg))
    return path
