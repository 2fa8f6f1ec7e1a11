"""Evaluation: top-1 accuracy over a loader and the bitbybit hackathon score.

Public API:
    evaluate(model, loader, *, device, progress) -> EvalResult(accuracy, n_images, n_correct)
    dataset_accuracy(model, data, device) -> float (evaluate over a whole dataset, unaugmented)
    bitbybit_score(model, acc_drop, *, delta=0.15, gamma=0.5) -> float
    bitbybit_breakdown(model, acc_drop, ...) -> ScoreBreakdown (every intermediate term)
    bitbybit_score_from_tiles(tiles, acc_drop, ...) -> ScoreBreakdown (pure arithmetic)
    hashed_tile_costs(model) -> list[TileCost]
    count_params_flops(model, input_shape) -> Complexity(params, macs, flops, layers) (+ LayerCost)
"""

from aimc_lsh.eval.complexity import Complexity, LayerCost, count_params_flops
from aimc_lsh.eval.evaluate import EvalResult, dataset_accuracy, evaluate
from aimc_lsh.eval.score import (
    ScoreBreakdown,
    TileCost,
    bitbybit_breakdown,
    bitbybit_score,
    bitbybit_score_from_tiles,
    hashed_tile_costs,
)

__all__ = [
    "Complexity",
    "EvalResult",
    "LayerCost",
    "ScoreBreakdown",
    "TileCost",
    "bitbybit_breakdown",
    "bitbybit_score",
    "bitbybit_score_from_tiles",
    "count_params_flops",
    "dataset_accuracy",
    "evaluate",
    "hashed_tile_costs",
]
