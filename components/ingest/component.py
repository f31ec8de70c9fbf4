"""The ingestion component: FileBasedExampleGen with our Beam image executor and input driver."""
from __future__ import annotations


from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from components.ingest.executor import Driver, Executor, pack_options
from components.ingest.beam_args import parallelism_args
from components.ingest.listing import input_base_and_pattern
from components.ingest.plan import holdout_split
from schemas.config import PipelineConfig


class ImageExampleGen(FileBasedExampleGen):
    """Labelled image folders / manifests -> deduplicated, leak-free TFRecord splits."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
    DRIVER_CLASS = Driver


def example_gen_input(data_input: str) -> tuple[str, example_gen_pb2.Input]:
    """ImageExampleGen's input_base and input_config for `data.input`."""
    base, pattern = input_base_and_pattern(data_input)
    return base, example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="all", pattern=pattern)])


def make_example_gen(cfg: PipelineConfig, input_base=None, input_config=None) -> ImageExampleGen:
    """The step for `cfg`; `input_base` / `input_config` (default: example_gen_input(data.input)) may
    also be placeholders (on Vertex, the runtime parameters' values). Its id is the pipeline's to give
    (TFX's default: the class name)."""
    base, config = example_gen_input(cfg.data.input)
    splits = [example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=buckets)
              for name, buckets in cfg.data.split_ratios.items()]
    # held-out sets get splits of their own (the executor fills them, never from the hash buckets)
    splits += [example_gen_pb2.SplitConfig.Split(name=holdout_split(name), hash_buckets=1)
               for name in cfg.evaluation.holdout_names()]
    gen = ImageExampleGen(
        input_base=base if input_base is None else input_base,
        input_config=config if input_config is None else input_config,
        # hash buckets per split; the executor assigns whole duplicate clusters to splits
        output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=splits)),
        custom_config=pack_options({**cfg.ingest.model_dump(), **cfg.evaluation.ingest_spec()}),
    )
    # The same parallelism as `synthdetect ingest` (one Beam worker process per core on the
    # DirectRunner); appended after the pipeline's own Beam args, so it applies to this step only.
    extra = parallelism_args(list(cfg.beam_args), cfg.ingest.workers)
    return gen.with_beam_pipeline_args(extra) if extra else gen
