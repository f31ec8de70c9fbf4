"""`synthdetect config`: validate a config and print it with every default filled in."""
from __future__ import annotations

import click

from pipeline.cli.common import config_option, load, set_option


@click.command("config")
@config_option
@set_option
def show_config(config: str, sets: tuple[str, ...]) -> None:
    """Validate a config and print it with every default filled in."""
    import yaml
    cfg = load(config, sets)
    click.echo(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
