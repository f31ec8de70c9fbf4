"""The Markdown + PNG report from a release check's results (the e2e test renders one from a real
pipeline run as well)."""
import json
import re
from pathlib import Path

from components.release_check.check import run_release_check
from pipeline.report import RunReport, write_markdown_report
from schemas.config import ThresholdConfig
from tests.tiny_models import tiny_model
from tests.tiny_models import N_PER_CLASS, make_eval_examples


def test_report_renders_tables_and_figures(tmp_path):
    examples = make_eval_examples(tmp_path / "examples")
    cand = tiny_model(tmp_path / "cand" / "Format-Serving", "good").parent
    base = tiny_model(tmp_path / "base" / "Format-Serving", "fragile").parent
    check_dir = tmp_path / "check"
    # no TFMA evaluation here: the gate must refuse (and say why), the report must still render
    result = run_release_check(str(examples), str(cand), str(base), str(tmp_path / "no-evaluation"), False,
                               ThresholdConfig().model_dump(), str(check_dir))
    assert result["blessed"] is False and "no TFMA validation result" in result["reasons"][0]
    rep = RunReport(run_id="r1", artifacts={"ReleaseCheck.check": str(check_dir),
                                            "Trainer_vgg16_finetune.model": str(cand),
                                            "Trainer_baseline.model": str(base)})
    md_path = Path(write_markdown_report(rep, str(tmp_path / "report")))
    md = md_path.read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert set(images) == {"confusion_matrices.png", "roc_curves.png", "training_curves.png", "calibration.png",
                           "robustness.png"}
    for name in images:
        png = md_path.parent / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, name
    assert "**NOT BLESSED**, nothing pushed" in md and "no TFMA validation result" in md
    # Table 1: the good candidate separates the classes perfectly at 0.5
    assert f"| real | {N_PER_CLASS} | 0 |" in md and f"| synthesized | 0 | {N_PER_CLASS} |" in md
    assert "## Table 2: classification reports" in md and "| blur_sigma1 |" in md
    check = json.loads((check_dir / "release_check.json").read_text())
    assert check["calibration"]["candidate"]["n_real"] == N_PER_CLASS


def test_an_eval_split_without_synthesized_images_is_refused_and_reported_as_na(tmp_path, capsys):
    """Issue 28.6: an eval split with real images only made the calibration TPR null; `run` and
    `synthdetect report` crashed on it (TypeError: unsupported format string passed to
    NoneType.__format__, exit 1 instead of 3). The gate must refuse with a reason, the report say n/a."""
    import numpy as np

    from pipeline.artifacts import RunOutputs
    from pipeline.cli.report import print_report
    from tests.tiny_models import _example, _real, _write_split
    rng = np.random.default_rng(1)
    examples = tmp_path / "examples"
    _write_split(examples, "eval", [_example(f"real/{i}.png", "real", _real(rng), "camera", "eval") for i in range(8)])
    (examples / "ingest_summary.json").write_text(json.dumps({"inputs": 8, "written": 8}))
    cand = tiny_model(tmp_path / "cand" / "Format-Serving", "good").parent
    base = tiny_model(tmp_path / "base" / "Format-Serving", "fragile").parent
    check_dir = tmp_path / "check"
    # TFMA said yes: the refusal must come from the missing class itself
    result = run_release_check(str(examples), str(cand), str(base), str(tmp_path / "no-evaluation"), True,
                               ThresholdConfig().model_dump(), str(check_dir))
    assert result["blessed"] is False
    assert any("no synthesized image in the eval split" in r for r in result["reasons"]), result["reasons"]
    assert result["calibration"]["candidate"]["tpr"] is None
    artifacts = {"ReleaseCheck.check": str(check_dir), "Trainer_vgg16_finetune.model": str(cand),
                 "Trainer_baseline.model": str(base)}
    v = RunOutputs("r1", artifacts).verdict()
    rep = RunReport(run_id="r1", artifacts=artifacts, blessed=v.blessed, validation_failures=v.failures,
                    blessing_reasons=v.reasons, calibration=v.calibration, robustness=v.robustness)
    print_report(rep)
    out = " ".join(capsys.readouterr().out.split())   # rich wraps at the terminal width
    assert "TPR n/a: no synthesized image in eval" in out and "NOT BLESSED" in out
    md = Path(write_markdown_report(rep, str(tmp_path / "report"))).read_text()
    assert "n/a: no synthesized image in eval" in md and "**NOT BLESSED**" in md
