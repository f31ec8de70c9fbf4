"""`synthdetect registry list|show|promote`: the versions in the model registry."""
from __future__ import annotations

import json

import click

from pipeline.cli.common import (UserError, config_option, console, holdout_line, json_option, load, set_option,
                                 user_errors)

registry_option = click.option("--registry", "registry_location", default=None, metavar="DIR|gs://…",
                               help="registry location (default: the config's `registry`)")


def registry_location(location: str | None, config: str, sets: tuple[str, ...]) -> str:
    return location or load(config, sets).registry


def _registry(location: str | None, config: str, sets: tuple[str, ...], for_writing: bool = False):
    """The registry to work on; a vertex:// destination is read through its GCS registry."""
    from components.registry.store import RegistryError, open_registry
    from components.registry.vertex import open_readable
    location = registry_location(location, config, sets)
    with user_errors(RegistryError):
        return open_registry(location) if for_writing else open_readable(location)


@click.group()
def registry() -> None:
    """Versions in the model registry (v1, v2, … and the aliases latest / production)."""


@registry.command("list")
@registry_option
@config_option
@set_option
@json_option
def registry_list(registry_location, config, sets, as_json) -> None:
    """List the registry's versions, newest last, with their aliases and headline metrics."""
    from rich.table import Table

    from components.registry.store import RegistryError
    reg = _registry(registry_location, config, sets)
    with user_errors(RegistryError):
        entries, aliases = reg.entries(), reg.aliases()
    unreadable = [e for e in entries if e["status"] == "unreadable"]
    dangling = [e for e in entries if e["status"] == "dangling"]
    if as_json:
        click.echo(json.dumps({"registry": reg.location, "aliases": aliases, "versions": entries}, indent=2))
    elif not entries:
        console.print(f"registry {reg.location}: no versions")
    else:
        t = Table(title=f"registry {reg.location}")
        for col in ("version", "aliases", "created", "run", "accuracy", "AUC", "threshold", "data"):
            t.add_column(col, justify="right" if col in ("accuracy", "AUC", "threshold") else "left")
        if unreadable or dangling:
            t.add_column("status", min_width=len("unreadable"), no_wrap=True)

        def num(x):   # a hand-edited model.json may hold a string: shown as it is
            return "-" if x is None else (f"{x:.3f}" if isinstance(x, (int, float)) and not isinstance(x, bool)
                                          else str(x))

        def text(x):
            return "-" if x is None else str(x)
        for e in entries:
            t.add_row(e["version"], ",".join(e["aliases"]), text(e["created_at"]), text(e["run_id"]),
                      num(e["accuracy"]), num(e["auc"]), num(e["threshold"]),
                      text(e["data_fingerprint"]).removeprefix("sha256:")[:12],
                      *([e["status"]] if unreadable or dangling else []))
        console.print(t)
    for e in dangling:
        click.echo(f"warning: {e['error']}; `registry promote VERSION --alias ALIAS` points it at a version",
                   err=True)
    if unreadable:   # after printing the rest: one bad version hides nothing, but is not a success
        first = unreadable[0]
        more = f" (and {len(unreadable) - 1} more unreadable versions)" if len(unreadable) > 1 else ""
        raise UserError(f"{first['version']} is unreadable: {first['error']}{more}")


@registry.command("show")
@click.argument("ref", metavar="VERSION|ALIAS")
@registry_option
@config_option
@set_option
@click.option("--json", "as_json", is_flag=True, help="print model.json as is")
def registry_show(ref, registry_location, config, sets, as_json) -> None:
    """Show one version's model.json (metrics, thresholds, calibration, blessing reasons)."""
    from components.registry.store import RegistryError
    reg = _registry(registry_location, config, sets)
    with user_errors(RegistryError):
        meta = reg.model_json(ref)
        all_aliases = reg.aliases()
    if as_json:
        click.echo(json.dumps(meta, indent=2))
        return
    try:
        _print_model_json(meta, all_aliases, reg.location, console)
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # a hand-edited model.json
        raise UserError(f"{meta.get('version', ref)}/model.json in {reg.location!r} has unexpected content "
                        f"({type(e).__name__}: {e}); `registry show {ref} --json` prints it as is") from None


def _print_model_json(meta: dict, all_aliases: dict, location: str, console) -> None:
    aliases = [a for a, v in sorted(all_aliases.items()) if v == meta.get("version")]
    console.print(f"[bold]{meta['version']}[/] {('(' + ', '.join(aliases) + ')') if aliases else ''} "
                  f"of {location}: {meta.get('model_name')}, created {meta.get('created_at')}, "
                  f"run {(meta.get('pipeline') or {}).get('run_id')}")
    for model, m in (meta.get("metrics") or {}).items():
        console.print(f"  {model:9}: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()
                                                    if isinstance(v, (int, float)) and k != "example_count")
                      + f" (n={m.get('example_count', 0):.0f})")
    c = meta.get("calibration") or {}
    if c:
        console.print(f"  threshold {c['threshold']:.4f} for FPR <= {c['target_fpr']:g} on real images: "
                      f"FPR {c['fpr']:.3f}, TPR {c['tpr']:.3f} (at 0.5: FPR {c['fpr_at_0.5']:.3f}, "
                      f"TPR {c['tpr_at_0.5']:.3f}; {c['n_real']} real images)")
    rob = meta.get("robustness") or {}
    if rob.get("perturbations"):
        console.print("  robustness (accuracy drop): " + ", ".join(
            f"{k} {v['accuracy_drop']:+.3f}" for k, v in rob["perturbations"].items()))
    for name, models in (meta.get("holdout") or {}).items():
        console.print(f"  held-out {name}: " + "; ".join(f"{m} {holdout_line(f)}" for m, f in models.items()))
    console.print(f"  data {(meta.get('data') or {}).get('fingerprint')}")
    console.print("  blessed: " + "; ".join((meta.get("blessing") or {}).get("reasons", [])))
    prod = meta.get("compared_with_production")
    if isinstance(prod, dict) and prod.get("compared"):
        m = prod.get("metrics") or {}
        cand, pm = m.get("candidate") or {}, m.get("production") or {}
        console.print(f"  compared with production {prod.get('version')}: " + ", ".join(
            f"{k} {cand.get(k, float('nan')):.3f} vs {pm.get(k, float('nan')):.3f}"
            for k in ("binary_accuracy", "auc")))
    elif isinstance(prod, dict):
        console.print(f"  compared with production: no ({prod.get('reason')})")


@registry.command("promote")
@click.argument("ref", metavar="VERSION|ALIAS")
@click.option("--alias", default="production", show_default=True, help="alias to move")
@registry_option
@config_option
@set_option
@json_option
def registry_promote(ref, alias, registry_location, config, sets, as_json) -> None:
    """Point an alias at a version (e.g. roll production back to v2); atomic."""
    from components.registry.store import RegistryError
    reg = _registry(registry_location, config, sets, for_writing=True)
    with user_errors(RegistryError):
        previous = reg.aliases().get(alias)
        version = reg.set_alias(alias, ref)
    if as_json:
        click.echo(json.dumps({"registry": reg.location, "alias": alias, "version": version, "previous": previous,
                               "changed": previous != version}))
    else:
        click.echo(f"{alias} -> {version}" + (f" (was {previous})" if previous and previous != version else ""))
