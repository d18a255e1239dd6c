"""fedbench.models: architecture registry over torchvision (`build_model(name, ...)`)."""

from fedbench.models.registry import (
    IMAGENET,
    MODELS,
    ModelSpec,
    PretrainedError,
    PretrainedReport,
    SegmentationModel,
    UnknownModelError,
    build_model,
    get_model_spec,
    imagenet_state_dict,
    list_models,
    load_pretrained,
    register_model,
)

__all__ = [
    "IMAGENET",
    "MODELS",
    "ModelSpec",
    "PretrainedError",
    "PretrainedReport",
    "SegmentationModel",
    "UnknownModelError",
    "build_model",
    "get_model_spec",
    "imagenet_state_dict",
    "list_models",
    "load_pretrained",
    "register_model",
]
