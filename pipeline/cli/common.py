"""What every command module shares: the two consoles, `UserError` (one `error:` line, exit 1), the
config options (`--config`, `--set KEY=VALUE`) and loading the config they name.

Imported first by `pipeline/cli/__init__.py`: the environment below is set before any command
imports TensorFlow.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")  # Beam workers too
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ noise; the run log has the rest
warnings.filterwarnings("ignore", category=FutureWarning)

import click  # noqa: E402 - after the environment settings above
from rich.console import Console  # noqa: E402 - after the environment settings above

DEFAULT_CONFIG = "configs/local.yaml"
VERTEX_CONFIG = "configs/vertex.yaml"
# Exit codes (README "Use in CI/CD"; `synthdetect --help` lists them). 1 and 2 are click's own.
EXIT_OK = 0           # done: `run` blessed and pushed the model (or it was already in the registry);
#                       `predict` scored every input
EXIT_ERROR = 1        # a user mistake or a failed run (one `error: …` line)
EXIT_USAGE = 2        # command-line usage (unknown option, missing argument)
EXIT_NOT_BLESSED = 3  # `run` / `submit --wait`: the release gate refused the model; nothing was pushed
EXIT_UNSCORED = 4     # `predict`: at least one input could not be scored (every line is still written)
EXIT_CODES_HELP = f"""\b
Exit codes:
  {EXIT_OK}  done: run blessed and pushed the model (or it is already in the registry); predict scored
     every input
  {EXIT_ERROR}  a user mistake (one `error:` line) or a failed run; predict: nothing to score
  {EXIT_USAGE}  usage error (unknown option, missing argument)
  {EXIT_NOT_BLESSED}  run, submit --wait: NOT BLESSED, nothing pushed (0 with --allow-unblessed)
  {EXIT_UNSCORED}  predict: some inputs could not be scored (their lines carry an `error`)"""
def _console(stderr: bool = False) -> Console:
    """Results on stdout (progress and decisions on stderr). Piped or redirected (`| cat`, `| tee`, a
    CI log), tables and lines are printed at their full width, plain: rich would otherwise lay them
    out for 80 columns, cutting or wrapping cells (a path split over two lines, an aliases column
    dropped, the BLESSED line of `make run | tee` broken in two)."""
    import sys
    if (sys.stderr if stderr else sys.stdout).isatty():
        return Console(stderr=stderr, highlight=False)
    return Console(stderr=stderr, highlight=False, width=int(os.environ.get("SYNTHDETECT_PIPE_WIDTH", "4000")),
                   soft_wrap=True, no_color=True)


console = _console()
progress_console = _console(stderr=True)  # progress, so stdout stays parseable


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


def exit_with_decision(blessed: bool | None, pushed: str | None, allow_unblessed: bool = False,
                       duplicate_of: str | None = None) -> None:
    """Ends `run` / `submit --wait` with the release decision in the exit code (EXIT_CODES_HELP). A
    blessed model that is already in the registry (an identical rerun: `duplicate_of`) is a success."""
    if blessed and pushed:
        return
    if blessed and duplicate_of:
        progress_console.print(f"BLESSED, not pushed again: {duplicate_of} in the registry is the same model "
                               "(same data, training config and ingestion); aliases unchanged (exit 0)")
        return
    if blessed is False:
        code = EXIT_OK if allow_unblessed else EXIT_NOT_BLESSED
        progress_console.print(f"NOT BLESSED: nothing pushed (exit {code}"
                               + (", --allow-unblessed)" if allow_unblessed else "; --allow-unblessed exits 0)"))
        raise click.exceptions.Exit(code)
    raise UserError("the run ended without a release decision (no blessing recorded)" if blessed is None
                    else "the model was blessed but not pushed")


allow_unblessed_option = click.option(
    "--allow-unblessed", is_flag=True,
    help=f"exit {EXIT_OK} when the gate refuses the model (exploratory runs); default: exit {EXIT_NOT_BLESSED}")
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


def feedback_lines(stats: dict) -> None:
    """How the curator feedback file applied to the input (`ingest`, `run`): one line, a warning
    when some decisions match no input (moved elsewhere, or the content changed)."""
    from rich.markup import escape

    from components.ingest.listing import feedback_line
    line = escape(feedback_line(stats))
    progress_console.print(f"[yellow]warning:[/] {line}" if stats["unmatched"] else line, soft_wrap=True,
                           highlight=False)
