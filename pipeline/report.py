"""What a pipeline run produced (`synthdetect report`), read back through pipeline/artifacts.py, and
the Markdown + PNG report of it (`--out`)."""
from __future__ import annotations

import dataclasses
import json
import os

from components.evaluator.results import REPORT_METRICS  # noqa: F401 - re-exported
from pipeline.artifacts import RunOutputs, RunRecord, Verdict
from pipeline.pipeline import BASELINE_TRAINER, CANDIDATE_TRAINER


@dataclasses.dataclass
class RunReport:
    """`synthdetect report --json`: the run's outputs and its `Verdict` (under the report's own key
    names: validation_failures, blessing_reasons), with the run's status."""
    run_id: str
    artifacts: dict[str, str]          # "<component>.<output>" -> uri
    ingest: dict | None = None         # ingest_summary.json
    metrics: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # model -> metric -> value
    blessed: bool | None = None
    validation_failures: list[str] = dataclasses.field(default_factory=list)
    pushed_to: str | None = None
    anomalies: list[str] = dataclasses.field(default_factory=list)
    blessing_reasons: list[str] = dataclasses.field(default_factory=list)  # why (not) blessed
    calibration: dict = dataclasses.field(default_factory=dict)  # model -> calibrated threshold, TPR/FPR
    robustness: dict = dataclasses.field(default_factory=dict)   # candidate under perturbations
    holdout: dict = dataclasses.field(default_factory=dict)      # held-out set -> model -> figures (no ROC)
    pushed_version: str | None = None
    status: str | None = None          # as `synthdetect runs` shows it: complete, running, interrupted, …
    production: dict = dataclasses.field(default_factory=dict)  # the comparison with the production model
    duplicate_of: str | None = None    # blessed, not pushed: the registry holds this version of the same model

    @classmethod
    def of(cls, outputs: RunOutputs, verdict: Verdict | None = None, **more) -> RunReport:
        """The report of `outputs` (`verdict`: theirs, when already read); `more`: ingest, anomalies, status."""
        v = verdict if verdict is not None else outputs.verdict()
        return cls(run_id=outputs.run_id, artifacts=outputs.uris, metrics=v.metrics, blessed=v.blessed,
                   validation_failures=v.failures, blessing_reasons=v.reasons, calibration=v.calibration,
                   robustness=v.robustness, holdout=v.holdout, production=v.production,
                   pushed_version=v.pushed_version, pushed_to=v.pushed_to, duplicate_of=v.duplicate_of, **more)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def run_report(metadata_path: str, pipeline_name: str, pipeline_root: str, run_id: str | None = None) -> RunReport:
    from pipeline.runs import status
    run = RunRecord.load(metadata_path, pipeline_name, run_id)
    outputs = run.outputs()
    return RunReport.of(outputs, ingest=outputs.ingest_summary(), anomalies=outputs.anomalies(),
                        status=status(run, metadata_path))


# ------------------------------------------------------------------------ Markdown + PNG report
MODEL_TITLES = {"candidate": "VGG16 fine-tune (candidate)", "baseline": "from scratch (baseline)",
                "production": "serving now (production)"}


def production_line(production: dict | None) -> str:
    """One line on the comparison with the model serving now (report, runs show, the run's summary)."""
    if not production:
        return "production: not compared (a run from before champion/challenger)"
    if not production.get("compared"):
        return f"production: none yet in {production.get('registry') or 'the registry'}; nothing to compare with"
    metrics = production.get("metrics") or {}
    c, p = metrics.get("candidate", {}), metrics.get("production", {})

    def pair(k: str) -> str:
        return f"{k} {_fmt(c.get(k))} vs {_fmt(p.get(k))}"
    return (f"production: compared with {production['version']} of {production.get('registry')}: "
            f"{pair('binary_accuracy')}, {pair('auc')} (candidate vs production, eval split)")


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def rate(x, kind: str) -> str:
    """A TPR or FPR for reports; undefined (None/NaN) when the eval split lacks that class."""
    if x is None or (isinstance(x, float) and x != x):
        return f"n/a: no {'synthesized' if kind == 'tpr' else 'real'} image in eval"
    return f"{x:.3f}"


def _plots(check: dict, histories: dict, out: str) -> dict[str, str]:
    """Writes the PNGs; returns {name: file name}."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    files: dict[str, str] = {}
    models = ("candidate", "baseline")

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(os.path.join(out, f"{name}.png"), dpi=110)
        plt.close(fig)
        files[name] = f"{name}.png"

    # Table 1 as images: confusion matrices at 0.5
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for ax, m in zip(axes, models, strict=True):
        c = check["classification"][m]["at_0.5"]["confusion"]
        mat = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        ax.imshow(mat, cmap="Blues")
        for (i, j), v in np.ndenumerate(mat):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > mat.max() / 2 else "black")
        ax.set_xticks([0, 1], ["pred. real", "pred. synth."])
        ax.set_yticks([0, 1], ["real", "synthesized"])
        ax.set_title(MODEL_TITLES[m], fontsize=10)
    save(fig, "confusion_matrices")

    # Fig. 2: ROC curves, with the calibrated operating point
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
    for ax, m in zip(axes, models, strict=True):
        roc, cal = check["roc"][m], check["calibration"][m]
        ax.plot(roc["fpr"], roc["tpr"], lw=2, label=f"AUC = {_fmt(roc['auc'])}")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.plot([cal["fpr"]], [cal["tpr"]], "o", color="tab:red",
                label=f"t={cal['threshold']:.4g}: TPR {_fmt(cal['tpr'])} @ FPR {_fmt(cal['fpr'])}")
        ax.set_xlabel("false positive rate (real called synthesized)")
        ax.set_ylabel("true positive rate")
        ax.set_title(MODEL_TITLES[m], fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
    save(fig, "roc_curves")

    # Fig. 3: training / validation accuracy and loss per model
    if any(histories.values()):
        fig, axes = plt.subplots(2, 2, figsize=(8, 6))
        for row, m in enumerate(models):
            h = histories.get(m) or {}
            for col, metric in enumerate(("accuracy", "loss")):
                ax = axes[row][col]
                for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
                    if h.get(key):
                        ax.plot(range(1, len(h[key]) + 1), h[key], marker="o", label=label)
                if metric == "accuracy" and h.get("val_auc"):   # the best epoch by eval AUC
                    best = max(range(len(h["val_auc"])), key=lambda i: h["val_auc"][i]) + 1
                    ax.axvline(best, color="tab:gray", ls=":", lw=1, label=f"best eval AUC (epoch {best})")
                ax.set_title(f"{MODEL_TITLES[m]}: {metric}", fontsize=9)
                ax.set_xlabel("epoch")
                ax.legend(fontsize=8)
        save(fig, "training_curves")

    # calibration (reliability) plot
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for m in models:
        r = check["reliability"][m]
        pts = [(x, y) for x, y, n in zip(r["mean_score"], r["fraction_synthesized"], r["count"], strict=True)
               if n and x is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=MODEL_TITLES[m])
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfectly calibrated")
    ax.set_xlabel("mean predicted p_synthesized (bin)")
    ax.set_ylabel("fraction synthesized")
    ax.legend(fontsize=8)
    save(fig, "calibration")

    # robustness: accuracy per perturbation
    rob = check["robustness"]
    names = ["clean"] + list(rob["perturbations"])
    acc = [rob["clean"]["accuracy"]] + [rob["perturbations"][n]["accuracy"] for n in names[1:]]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    colors = ["tab:gray"] + ["tab:green" if rob["perturbations"][n]["passed"] else "tab:red" for n in names[1:]]
    ax.bar(names, acc, color=colors)
    ax.axhline(rob["clean"]["accuracy"] - rob["max_allowed_drop"], color="k", ls="--", lw=0.8,
               label=f"clean - {rob['max_allowed_drop']:g} (gate)")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy at 0.5")
    ax.legend(fontsize=8)
    save(fig, "robustness")
    return files


def _one_class_slices(scores: dict | None) -> set[str]:
    """Slice names ("source=x") whose eval examples are all of one label (from scores.json)."""
    from components.evaluator.names import SLICE_FEATURES
    classes: dict[str, set[int]] = {}
    for meta, label in zip(*((scores["examples"], scores["labels"]) if scores else ((), ())), strict=True):
        for key in SLICE_FEATURES:
            if key in meta:
                classes.setdefault(f"{key}={meta[key]}", set()).add(label)
    return {name for name, labels in classes.items() if len(labels) == 1}


def _holdout_plot(name: str, figures: dict, out_dir: str) -> str:
    """ROC of both models on one held-out set (on the basis its AUC was measured on); the file name."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    for m, f in figures.items():
        if f.get("roc"):
            ax.plot(f["roc"]["fpr"], f["roc"]["tpr"], lw=2, label=f"{MODEL_TITLES.get(m, m)}: AUC {_fmt(f['auc'])}")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    basis = next(iter(figures.values())).get("basis", "")
    ax.set_title(f"held-out set {name}\n({basis})", fontsize=9)
    ax.set_xlabel("false positive rate (real called synthesized)")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    file = f"roc_holdout_{name}.png"
    fig.savefig(os.path.join(out_dir, file), dpi=110)
    plt.close(fig)
    return file


def _holdout_section(check: dict, out_dir: str) -> list[str]:
    """"Held-out sets": figures per set and model, TFMA's per-split figures, an ROC per set."""
    holdout = check.get("holdout") or {}
    if not holdout:
        return []
    t = check["thresholds"]
    gate = [f"AUC >= {t['min_holdout_auc']}" if t.get("min_holdout_auc") is not None else "",
            f"gap <= {t['max_generalisation_gap']:g}" if t.get("max_generalisation_gap") is not None else ""]
    md = ["## Held-out sets (generalisation)", "",
          "Sets the models never trained on (`evaluation.holdout_sets`, `evaluation.leave_out`). A set with both "
          "labels is measured on its own; a single-label set against the eval split's images of the other label "
          "(basis). Gap = eval AUC − held-out AUC. TPR at FPR <= target: operating point chosen on the basis' real "
          "images; at the release threshold: the threshold calibrated on the eval split. "
          f"Gate: {', '.join(g for g in gate if g) or 'none (reported only)'}.", "",
          "| set | model | n (real / synth.) | basis | AUC | gap | TPR at FPR <= target | accuracy at 0.5 | "
          "TPR / FPR at the release threshold |", "|---|---|---|---|---|---|---|---|---|"]
    for name, models in holdout.items():
        for m, f in models.items():
            at = f.get("at_threshold") or {}
            md.append(f"| {name} | {MODEL_TITLES.get(m, m)} | {f['n_examples']} ({f['n_real']} / {f['n_synthesized']}) "
                      f"| {f['basis']} | {_fmt(f.get('auc'))} | {_fmt(f.get('gap'))} "
                      f"| {_fmt(f.get('tpr_at_target_fpr'))} "
                      f"| {_fmt(f.get('accuracy'))} | {_fmt(at.get('tpr'))} / {_fmt(at.get('fpr'))} |")
    tfma = (check.get("tfma") or {}).get("holdout") or {}
    if tfma:
        md += ["", "TFMA on the held-out splits (AUC is undefined on a single-label split):", "",
               "| split | model | n | accuracy | AUC |", "|---|---|---|---|---|"]
        for split, models in sorted(tfma.items()):
            for m, v in models.items():
                mt = v.get("metrics", {})
                md.append(f"| {split} | {m} | {_fmt(mt.get('example_count'), 0)} | {_fmt(mt.get('binary_accuracy'))} "
                          f"| {_fmt(mt.get('auc'))} |")
    md.append("")
    for name, models in holdout.items():
        if any(f.get("roc") for f in models.values()):
            md += [f"![ROC on held-out set {name}]({_holdout_plot(name, models, out_dir)})", ""]
    return md


def _training_section(run, rep: RunReport) -> list[str]:
    """Per Trainer: epochs run, the best epoch by eval AUC (the exported weights when early stopping
    is on), whether it resumed from a checkpoint, time per epoch and training images/s."""
    rows = []
    n_train = ((rep.ingest or {}).get("written_by_split") or {}).get("train")
    if isinstance(n_train, dict):   # per label
        n_train = sum(v for v in n_train.values() if isinstance(v, (int, float)))
    for m, trainer in (("candidate", CANDIDATE_TRAINER), ("baseline", BASELINE_TRAINER)):
        t = run.training(trainer) or {}
        h = t.get("history") or {}
        if not h:
            continue
        secs = h.get("seconds") or []
        per = sum(secs) / len(secs) if secs else None
        aucs = h.get("val_auc") or []
        best = t.get("best_epoch") or (max(range(len(aucs)), key=lambda i: aucs[i]) + 1 if aucs else None)
        cfg = t.get("config") or {}
        exported = "best (early stopping)" if cfg.get("early_stopping_patience") else "last"
        rows.append(f"| {MODEL_TITLES[m]} | {len(h.get('loss') or [])}/{cfg.get('epochs', '?')}"
                    f"{' (stopped early)' if t.get('stopped_early') else ''} | "
                    f"{best if best else '–'} ({_fmt(aucs[best - 1]) if best and aucs else '–'}) | {exported} | "
                    f"{t.get('resumed_after_epoch') or '–'} | {f'{per:.0f}s' if per else '–'} | "
                    f"{f'{n_train / per:.0f}' if per and n_train else '–'} |")
    if not rows:
        return []
    return ["## Training", "",
            "| model | epochs | best epoch (eval AUC) | exported weights | resumed after epoch | time per epoch "
            "| train images/s |", "|---|---|---|---|---|---|---|", *rows,
            "", "Time per epoch includes the evaluation pass on the eval split.", ""]


def write_markdown_report(rep: RunReport, out_dir: str) -> str:
    """`synthdetect report --out DIR`: report.md + PNGs (paper tables 1-2 and figs 2-3, calibration,
    slices, robustness, blessing). Returns the Markdown path."""
    run = RunOutputs(rep.run_id, rep.artifacts)
    check = run.release_check()
    if check is None:
        raise LookupError(f"run {rep.run_id} has no release check results (did it reach the ReleaseCheck?)")
    os.makedirs(out_dir, exist_ok=True)
    histories = {"candidate": run.history(CANDIDATE_TRAINER), "baseline": run.history(BASELINE_TRAINER)}
    files = _plots(check, histories, out_dir)
    models = ("candidate", "baseline")
    md: list[str] = [f"# synthdetect run {rep.run_id}", ""]
    verdict = "BLESSED" if check["blessed"] else "NOT BLESSED"
    md += [f"**{verdict}**" + (f", pushed as `{rep.pushed_version}` ({rep.pushed_to})" if rep.pushed_to
                               else f", nothing pushed: the registry's `{rep.duplicate_of}` is the same model "
                                    "(same data, training config and ingestion)" if rep.duplicate_of
                               else ", nothing pushed"), ""]
    md += [f"- {r}" for r in check["reasons"]] + [""]
    if rep.ingest:
        i = rep.ingest
        md += [f"Data: {i.get('inputs')} inputs, {i.get('written')} written, {i.get('quarantined')} quarantined; "
               f"eval split {check['n_examples']} examples.", ""]
    t = check["thresholds"]
    md += ["Gate: accuracy >= {min_accuracy:g}, AUC >= {min_auc:g}, gains over the baseline >= {min_accuracy_gain:g} "
           "(accuracy) / {min_auc_gain:g} (AUC), accuracy drop under every perturbation <= "
           "{max_robustness_drop:g}.".format(**t), ""]

    md += _training_section(run, rep)
    md += ["## Evaluation (TFMA, eval split)", "",
           "| model | n | accuracy | AUC | AUC-PR | precision | recall | F1 |", "|---|---|---|---|---|---|---|---|"]
    def row(title: str, v: dict) -> str:
        return f"| {title} | {_fmt(v.get('example_count'), 0)} | " + " | ".join(
            _fmt(v.get(k)) for k in ("binary_accuracy", "auc", "auc_pr", "precision", "recall", "f1_score")) + " |"
    md += [row(MODEL_TITLES[m], check["tfma"]["metrics"].get(m, {})) for m in models]
    prod = check.get("production") or {}
    if prod.get("compared"):
        md.append(row(f"{MODEL_TITLES['production']} {prod['version']}",
                      (prod.get("metrics") or {}).get("production", {})))
    md += ["", production_line(prod)]

    md += ["", "## Table 1: confusion matrices (threshold 0.5)", "",
           "| | candidate: predicted real | candidate: predicted synthesized | baseline: predicted real | "
           "baseline: predicted synthesized |", "|---|---|---|---|---|"]
    cm = {m: check["classification"][m]["at_0.5"]["confusion"] for m in models}
    cand, base = cm["candidate"], cm["baseline"]
    md.append(f"| real | {cand['tn']} | {cand['fp']} | {base['tn']} | {base['fp']} |")
    md.append(f"| synthesized | {cand['fn']} | {cand['tp']} | {base['fn']} | {base['tp']} |")
    md += ["", f"![confusion matrices]({files['confusion_matrices']})", "",
           "## Table 2: classification reports (threshold 0.5)", "",
           "| | candidate: synthesized | candidate: real | baseline: synthesized | baseline: real |",
           "|---|---|---|---|---|"]
    cr = {m: check["classification"][m]["at_0.5"] for m in models}
    for k in ("precision", "recall", "f1", "support"):
        md.append(f"| {k} | " + " | ".join(_fmt(cr[m][cls][k], 0 if k == "support" else 2)
                                           for m in models for cls in ("positive", "negative")) + " |")
    md.append(f"| accuracy | {_fmt(cr['candidate']['accuracy'], 2)} | | {_fmt(cr['baseline']['accuracy'], 2)} | |")

    md += ["", "## Fig. 2: ROC curves", "", f"![ROC curves]({files['roc_curves']})", ""]
    if "training_curves" in files:
        md += ["## Fig. 3: training and validation accuracy and loss", "",
               f"![training curves]({files['training_curves']})", ""]
    md += ["## Calibration", "",
           f"Decision threshold chosen on the eval split for FPR <= {t['target_fpr']:g} on real images "
           "(stored with the model in model.json and assets.extra/calibration.json).", "",
           "| model | threshold | FPR | TPR | accuracy | FPR at 0.5 | TPR at 0.5 | real images |",
           "|---|---|---|---|---|---|---|---|"]
    for m in models:
        c = check["calibration"][m]
        md.append(f"| {MODEL_TITLES[m]} | {c['threshold']:.4f} | {rate(c['fpr'], 'fpr')} | {rate(c['tpr'], 'tpr')} | "
                  f"{_fmt(c['accuracy'])} | {rate(c['fpr_at_0.5'], 'fpr')} | {rate(c['tpr_at_0.5'], 'tpr')} | "
                  f"{c['n_real']} |")
    md += ["", f"![calibration plot]({files['calibration']})", "",
           "## Slices (TFMA)", "",
           "| slice | n | candidate accuracy | candidate AUC | baseline accuracy | baseline AUC |",
           "|---|---|---|---|---|---|"]
    base_rows = {r["slice"]: r for r in check["tfma"]["slices"].get("baseline", [])}
    one_class = _one_class_slices(run.release_scores())
    for r in check["tfma"]["slices"].get("candidate", []):
        b = base_rows.get(r["slice"], {})

        def auc(row: dict, r: dict = r) -> str:  # TFMA reports 0 for a slice holding one class: undefined, not 0
            return "n/a (one class)" if r["slice"] in one_class else _fmt(row.get("auc"))
        name = r["slice"] + ("(none)" if r["slice"].endswith("=") else "")
        md.append(f"| {name} | {_fmt(r.get('example_count'), 0)} | {_fmt(r.get('binary_accuracy'))} | "
                  f"{auc(r)} | {_fmt(b.get('binary_accuracy'))} | {auc(b)} |")
    rob = check["robustness"]
    md += ["", "## Robustness (candidate)", "",
           "| perturbation | accuracy | drop | accuracy at threshold | TPR at threshold | FPR at threshold | AUC "
           "| gate |",
           "|---|---|---|---|---|---|---|---|",
           f"| clean | {_fmt(rob['clean']['accuracy'])} | | {_fmt(rob['clean']['accuracy_at_threshold'])} | "
           f"{_fmt(rob['clean']['tpr_at_threshold'])} | {_fmt(rob['clean']['fpr_at_threshold'])} | "
           f"{_fmt(rob['clean']['auc'])} | |"]
    for n, r in rob["perturbations"].items():
        md.append(f"| {n} | {_fmt(r['accuracy'])} | {r['accuracy_drop']:+.3f} | {_fmt(r['accuracy_at_threshold'])} | "
                  f"{_fmt(r['tpr_at_threshold'])} | {_fmt(r['fpr_at_threshold'])} | {_fmt(r['auc'])} | "
                  f"{'pass' if r['passed'] else 'FAIL'} |")
    md += ["", f"![robustness]({files['robustness']})", ""]
    md += _holdout_section(check, out_dir)
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(md) + "\n")
    return path
