"""`synthdetect`, the command line (`python -m pipeline.cli` is the same program).

One module per command group, each a plain click command registered below with `main.add_command`:

    run.py       run (the pipeline here; --runner local|vertex)
    report.py    report [RUN] [--out DIR]
    config.py    config
    ingest.py    ingest --input … --output …
    runs.py      runs [show RUN]
    registry.py  registry list|show|promote
    predict.py   predict --model …
    curate.py    curate [export-feedback]
    cloud.py     compile, submit, schedule (Vertex AI)

`common.py` holds what they share (consoles, `UserError`, the config options). Command modules
import `pipeline.cli.common` and the pipeline's modules, never this package or each other's
commands; heavy libraries (TensorFlow, TFX, FiftyOne) are imported inside the commands, so
`--help` and config mistakes answer at once. User mistakes end as one `error:` line and exit 1; the
other exit codes (the release decision, unscored inputs) are `common.EXIT_*`.
"""
from __future__ import annotations

import logging

import click

from pipeline.cli import cloud, config, curate, ingest, predict, registry, report, run, runs
from pipeline.cli.common import EXIT_CODES_HELP, UserError

COMMANDS = (run.run, report.report, config.show_config, ingest.ingest, runs.runs, registry.registry,
            predict.predict, curate.curate, cloud.compile_cmd, cloud.submit, cloud.schedule)


class _Main(click.Group):
    """Missing Google Cloud credentials end any command as one `error:` line (components/gcloud.py
    decides it once for Vertex AI, gs:// registries, models and inputs)."""

    def invoke(self, ctx):
        from components.gcloud import NoCredentials
        try:
            return super().invoke(ctx)
        except NoCredentials as e:
            raise UserError(str(e)) from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(package_name="synthdetect")
def main() -> None:
    """synthdetect: a TFX pipeline that tells AI-synthesized images from real photographs."""
    from pipeline.logs import route_library_logs
    route_library_logs([], logging.WARNING)


for _command in COMMANDS:
    main.add_command(_command)
