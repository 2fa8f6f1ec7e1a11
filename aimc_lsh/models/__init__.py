"""Backbones: CIFAR ResNets (option-A and option-B shortcuts), the digits CNN, checksummed loading.

Public API:
    get_backbone(name, *, path, cache_dir, download, map_location) -> nn.Module (eval mode, takes [0, 1])
    backbone_names(), backbone_spec(name), register_backbone(spec), unregister_backbone(name),
    BackboneSpec, find_weights(spec, ...)
    CifarResNet, BasicBlock, PadShortcut, resnet20_a(), resnet20_b(), cifar_resnet(...), Normalize
    DigitsNet, train_digits_model(...) -> DigitsTrainResult
    read_checkpoint(path, checksum), strip_prefix(state_dict), load_state_dict_strict(model, sd),
    CheckpointError
"""

from aimc_lsh.models.checkpoints import (
    CheckpointError,
    extract_state_dict,
    load_state_dict_strict,
    read_checkpoint,
    strip_prefix,
)
from aimc_lsh.models.digits import DigitsNet, DigitsTrainResult, train_digits_model
from aimc_lsh.models.normalize import Normalize
from aimc_lsh.models.registry import (
    MODELS_ENV,
    BackboneSpec,
    backbone_names,
    backbone_spec,
    find_weights,
    get_backbone,
    register_backbone,
    unregister_backbone,
)
from aimc_lsh.models.resnet import BasicBlock, CifarResNet, PadShortcut, cifar_resnet, resnet20_a, resnet20_b

__all__ = [
    "MODELS_ENV",
    "BackboneSpec",
    "BasicBlock",
    "CheckpointError",
    "CifarResNet",
    "DigitsNet",
    "DigitsTrainResult",
    "Normalize",
    "PadShortcut",
    "backbone_names",
    "backbone_spec",
    "cifar_resnet",
    "extract_state_dict",
    "find_weights",
    "get_backbone",
    "load_state_dict_strict",
    "read_checkpoint",
    "register_backbone",
    "resnet20_a",
    "resnet20_b",
    "strip_prefix",
    "train_digits_model",
    "unregister_backbone",
]
