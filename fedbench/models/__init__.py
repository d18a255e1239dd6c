"""fedbench.models: architecture registry over torchvision (`build_model(name, ...)`)."""

from fedbench.models.registry import (
    MODELS,
    ModelSpec,
    PretrainedReport,
    SegmentationModel,
    UnknownModelError,
    build_model,
    get_model_spec,
    list_models,
    load_pretrained,
    register_model,
)

__all__ = [
    "MODELS", "ModelSpec", "PretrainedReport", "SegmentationModel", "UnknownModelError",
    "build_model", "get_model_spec", "list_models", "load_pretrained", "register_model",
]
