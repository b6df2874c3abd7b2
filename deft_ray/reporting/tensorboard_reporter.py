"""TensorBoard: event files in ``DIR/tensorboard/`` (``tensorboard --logdir DIR``), written with
tensorboard's own event writer (no TensorFlow, no torch)."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from deft_ray.config import RunConfig, to_dict
from deft_ray.reporting.base import Reporter, flat_config, round_values, summary_values
from deft_ray.runtime.records import RoundRecord, RunSummary

#: Sub-folder of the run directory that holds the event files.
LOG_DIR = "tensorboard"


class TensorBoardReporter(Reporter):
    """Scalars: every round's values at its step, then the summary's; the resolved config as
    hyperparameters (the HParams tab) and as text (``config``); the plots as images
    (``plots/<name>``). The adapter stays in ``DIR/adapter/``, beside the event files."""

    def __init__(self):
        self.writer = None

    def start(self, config: RunConfig, run_dir: Path) -> None:
        from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.writer = EventFileWriter(str(run_dir / LOG_DIR))
        flat = flat_config(config)
        experiment = api_pb2.Experiment(hparam_infos=[api_pb2.HParamInfo(name=key) for key in flat])
        self._add(_hparams_summary(experiment=experiment), step=0)
        start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
        for key, value in flat.items():
            if isinstance(value, bool):
                start.hparams[key].bool_value = value
            elif isinstance(value, (int, float)):
                start.hparams[key].number_value = value
            else:
                start.hparams[key].string_value = value
        self._add(_hparams_summary(session_start_info=start), step=0)
        self._add(_text_summary("config", yaml.safe_dump(to_dict(config), sort_keys=False)), step=0)

    def log_round(self, record: RoundRecord) -> None:
        self._scalars(round_values(record), step=record.round_idx)

    def finish(self, summary: RunSummary, run_dir: Path) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        self._scalars(summary_values(summary), step=summary.rounds)
        for plot in sorted((run_dir / "plots").glob("*.png")):
            data = plot.read_bytes()
            width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # PNG IHDR
            image = Summary.Image(encoded_image_string=data, width=width, height=height, colorspace=4)
            self._add(Summary(value=[Summary.Value(tag=f"plots/{plot.stem}", image=image)]), step=summary.rounds)

    def close(self, *, completed: bool) -> None:
        if self.writer is not None:
            from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

            status = api_pb2.STATUS_SUCCESS if completed else api_pb2.STATUS_FAILURE
            self._add(_hparams_summary(session_end_info=plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())),
                      step=0)
            self.writer.close()
            self.writer = None

    def _scalars(self, values: dict[str, float], *, step: int) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        self._add(Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in values.items()]),
                  step=step)

    def _add(self, summary, *, step: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        self.writer.add_event(Event(summary=summary, step=step, wall_time=time.time()))
        self.writer.flush()


def _hparams_summary(**info):
    """A summary of the HParams plugin (its experiment, session start or session end), built from
    its protos as ``tensorboard.plugins.hparams.summary`` does, without TensorFlow."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    (kind, _), = info.items()
    tag = {"experiment": metadata.EXPERIMENT_TAG, "session_start_info": metadata.SESSION_START_INFO_TAG,
           "session_end_info": metadata.SESSION_END_INFO_TAG}[kind]
    content = plugin_data_pb2.HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **info)
    plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString())
    return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])


def _text_summary(tag: str, text: str):
    """A summary the Text tab shows."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto

    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text"))
    tensor = TensorProto(dtype=7, string_val=[text.encode()],  # 7: DT_STRING
                         tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]))
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata, tensor=tensor)])
