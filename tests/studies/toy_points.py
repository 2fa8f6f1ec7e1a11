"""Point functions for runner tests (module level, so spawned workers can import them)."""

import os
import time

import torch


def noisy_rows(params, context):
    """Two rows whose values depend on the globally seeded torch RNG and on the parameters."""
    time.sleep(context.get("sleep", 0.0))
    draws = torch.randn(2)
    return [{"row": i, "value": float(draws[i]) * params["a"], "pid_parity": None} for i in range(2)]


def counting_rows(params, context):
    """One row; appends the point's 'a' to a log file so tests can count executions."""
    with open(context["log"], "a") as handle:
        handle.write(f"{params['a']}\n")
    return [{"value": params["a"] * 10}]


def failing_rows(params, context):
    if params["a"] == context.get("fail_at"):
        raise RuntimeError("boom")
    return [{"value": 1}]


def bad_rows(params, context):
    return [{"a": 1}]  # repeats a parameter


def worker_pid(params, context):
    return [{"pid": os.getpid()}]
