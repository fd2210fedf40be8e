"""A training run's results.json and history as the trainer contract's messages.

One conversion for the trainer's GetResults/GetHistory and for the reporter reading a
finished run's stored results: the results dict uses the proto's field names, extra keys
(history, paths) are skipped, and ``observed_track`` is set only for models with a track.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from trajlab.trainer.v1 import trainer_pb2


def results_to_proto(results: dict[str, Any]) -> trainer_pb2.EvaluationResults:
    """``results.json`` -> EvaluationResults (raises json_format.ParseError on a wrong-typed field)."""
    msg = trainer_pb2.EvaluationResults()
    json_format.ParseDict(results, msg, ignore_unknown_fields=True)
    track = results.get("track")
    if track:  # only models with the track readout have it; left unset otherwise
        json_format.ParseDict(track, msg.observed_track, ignore_unknown_fields=True)
        msg.observed_track.present = True
    return msg


def history_to_proto(history: list[dict[str, Any]]) -> list[trainer_pb2.EpochMetrics]:
    """``history.json`` rows -> EpochMetrics, in order."""
    out = []
    for row in history:
        m = trainer_pb2.EpochMetrics()
        json_format.ParseDict(row, m, ignore_unknown_fields=True)
        out.append(m)
    return out
