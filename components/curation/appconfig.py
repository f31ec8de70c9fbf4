"""How the FiftyOne App shows the curators' dataset, saved with it (`ds.app_config` and a workspace).

* Sidebar groups in this order: tags, labels, model, provenance, duplicates, quarantine, then
  FiftyOne's own (metadata, and any other field under "other"/"primitives").
* Labels coloured by value, the same contrasting pair everywhere (`LABEL_COLORS`: real blue,
  synthesized red), for `ground_truth` and `prediction` alike, so a wrong prediction stands out
  beside its label; the static map (`brain.write_map_png`) uses the same pair.
* Saved workspace `curation`: the samples grid and, in the tab beside it, the Embeddings panel for
  the `embedding_map` brain run, its colour field set to `ground_truth.label` (the state keys of
  both the classic panel, `colorByField`, and 1.22's panel, `colorField`). FiftyOne 1.22's panel opens
  on its list of maps and may still show "Color by: None": one click on the map, then "Color by" →
  `ground_truth.label` (docs/guides/curator.md); the PNG needs no App.
"""
from __future__ import annotations

from components.curation import brain

# group -> fields, in sidebar order (fields missing from the dataset are left out)
SIDEBAR_GROUPS = {
    "labels": ["ground_truth", "prediction"],
    "model": ["p_synthesized", "eval", brain.MISTAKENNESS_FIELD, "hardness", "uniqueness"],
    "provenance": ["source", "generator", "content", "orig_format", "orig_mode", "orig_width", "orig_height",
                   "codec", "split", "holdout", "path", "sha256"],
    "duplicates": ["status", "cluster_id", "cluster_size", "representative"],
    "quarantine": ["quarantine_reason", "quarantine_detail"],
}
COLLAPSED = ("provenance", "quarantine")
GROUND_TRUTH_COLOR = "#1f6fd1"   # blue (colour by field)
PREDICTION_COLOR = "#f08c00"     # orange (colour by field)
LABEL_COLORS = brain.LABEL_COLORS
WORKSPACE = "curation"
MAP_COLOR_FIELD = "ground_truth.label"


def sidebar_groups(ds) -> list:
    """Our groups after FiftyOne's `tags` group; FiftyOne's other default groups after ours, minus the
    fields we placed."""
    import fiftyone as fo
    schema = ds.get_field_schema()
    ours = [fo.SidebarGroupDocument(name=name, paths=[f for f in fields if f in schema],
                                    expanded=name not in COLLAPSED)
            for name, fields in SIDEBAR_GROUPS.items() if any(f in schema for f in fields)]
    placed = {p for g in ours for p in g.paths}
    groups = []
    for g in fo.DatasetAppConfig.default_sidebar_groups(ds):
        if g.name in SIDEBAR_GROUPS:          # FiftyOne's own "labels": ours replaces it
            continue
        rest = [p for p in g.paths if p not in placed]
        if g.name == "tags":
            groups.append(fo.SidebarGroupDocument(name="tags", paths=rest))
            groups.extend(ours)
        elif rest or g.name == "metadata":
            groups.append(fo.SidebarGroupDocument(name=g.name, paths=rest, expanded=g.name == "other" and None))
    return groups


def color_scheme():
    import fiftyone as fo
    values = [{"value": label, "color": color} for label, color in LABEL_COLORS.items()]
    return fo.ColorScheme(color_by="value", fields=[
        {"path": "ground_truth", "fieldColor": GROUND_TRUTH_COLOR, "valueColors": values},
        {"path": "prediction", "fieldColor": PREDICTION_COLOR, "valueColors": values}])


def workspace(ds):
    """The grid and, when the map exists, the Embeddings panel as a second tab beside it (a split
    layout renders both panels empty in headless Chromium, so the grid stays the active tab)."""
    import fiftyone as fo
    panels = [fo.Panel(type="Samples", pinned=True)]
    if brain.MAP_KEY in ds.list_brain_runs():
        panels.append(fo.Panel(type="Embeddings",
                               state={"brainResult": brain.MAP_KEY, "colorByField": MAP_COLOR_FIELD,
                                      "colorField": MAP_COLOR_FIELD}))
    return fo.Space(children=panels, active_child=panels[0].component_id)


def configure(ds) -> None:
    """Saves the sidebar groups, colours and the `curation` workspace with the dataset."""
    ds.app_config.sidebar_groups = sidebar_groups(ds)
    ds.app_config.color_scheme = color_scheme()
    ds.save()
    ds.save_workspace(WORKSPACE, workspace(ds), description="samples grid and the embeddings map",
                      overwrite=True)
