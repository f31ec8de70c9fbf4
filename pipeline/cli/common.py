"""What every command module shares: the two consoles, `UserError` (one `error:` line, exit 1), the
config options (`--config`, `--set KEY=VALUE`) and loading the config they name.

Imported first by `pipeline/cli/__init__.py`: the environment below is set before any command
imports TensorFlow.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Iterator

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")  # Beam workers too
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ noise; the run log has the rest
warnings.filterwarnings("ignore", category=FutureWarning)

import click  # noqa: E402
from rich.console import Console  # noqa: E402

DEFAULT_CONFIG = "configs/local.yaml"
VERTEX_CONFIG = "configs/vertex.yaml"
console = Console(highlight=False)          # results
progress_console = Console(stderr=True, highlight=False)  # progress, so stdout stays parseable


class UserError(click.ClickException):
    """Printed as one line: `error: <message>`."""

    def show(self, file=None):
        click.echo(f"error: {self.format_message()}", err=True)


def parse_sets(sets: tuple[str, ...]) -> dict:
    """`--set a.b=VALUE` overrides -> nested dict (values parsed as YAML)."""
    import yaml
    out: dict = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects KEY=VALUE (e.g. model.epochs=1), got {item!r}")
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {item!r}: {p!r} was already set to a value, not a section")
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise UserError(f"--set {item!r}: the value is not valid YAML ({problem}); quote it to pass a "
                            f"string, e.g. --set '{key}=\"{value}\"'") from None
    return out


def load(config: str, sets: tuple[str, ...] = ()):
    """The validated PipelineConfig, or a UserError naming the mistake."""
    from schemas.config import ConfigError, load_config
    try:
        return load_config(config, parse_sets(sets))
    except ConfigError as e:
        raise UserError(str(e)) from None


@contextlib.contextmanager
def user_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """`with user_errors(LookupError, RegistryError): ...`: those exceptions, whose messages are
    written for users, end as one `error:` line."""
    try:
        yield
    except kinds as e:
        raise UserError(str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)) from None


config_option = click.option("--config", "-c", default=DEFAULT_CONFIG, show_default=True,
                             help="pipeline config (YAML)")
vertex_config_option = click.option("--config", "-c", default=VERTEX_CONFIG, show_default=True,
                                    help="pipeline config with a vertex: section (YAML)")
set_option = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                          help="override a config value, e.g. --set model.epochs=1 (repeatable)")
json_option = click.option("--json", "as_json", is_flag=True, help="print JSON")


def short(path: str | None) -> str:
    """A path relative to the working directory when it is below it; gs:// URIs as they are."""
    if not path or path.startswith("gs://"):
        return path or ""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def holdout_line(f: dict) -> str:
    """One model on one held-out set, as `registry show` and `report` print it."""
    def num(x, fmt=".3f"):
        return "–" if x is None else format(x, fmt)
    return (f"AUC {num(f.get('auc'))} ({f.get('basis')}), gap {num(f.get('gap'), '+.3f')}, "
            f"TPR {num(f.get('tpr_at_target_fpr'))} at FPR <= target, accuracy {num(f.get('accuracy'))}, "
            f"n={f.get('n_examples')}")
