"""The continual-learning loop: triggers (schedule, new data, drift and decay alerts, by hand),
stateless or stateful retraining, the gate, a shadow or canary rollout with automatic rollback,
and promotion, as a resumable state machine in the metadata store guarded by a lease."""

from loopml.controller._controller import Controller, StepResult
from loopml.controller._replay import FileReplay, Period, ReplayResult, replay, replay_file
from loopml.controller._state import Lease, LoopEvent, LoopState, LoopStore

__all__ = [
    "Controller",
    "FileReplay",
    "Lease",
    "LoopEvent",
    "LoopState",
    "LoopStore",
    "Period",
    "ReplayResult",
    "StepResult",
    "replay",
    "replay_file",
]
