from os import PathLike
from typing import Any, Literal, Sequence, TypeVar, Union

import numpy as np

Array = TypeVar("Array")  # numpy.ndarray or torch.Tensor (CPU); results are the same kind
Backend = Literal["auto", "cpu", "reference", "wgpu", "cubecl-wgpu", "cubecl-cuda"]
StorageDType = Literal["f32", "f16", "bf16"]

def ms_deform_attn(
    value: Array,
    spatial_shapes: Any,
    level_start_index: Any,
    sampling_locations: Array,
    attention_weights: Array,
    backend: Backend = "auto",
    dtype: StorageDType = "f32",
) -> Array: ...
def ms_deform_attn_backward(
    value: Array,
    spatial_shapes: Any,
    level_start_index: Any,
    sampling_locations: Array,
    attention_weights: Array,
    grad_output: Array,
    backend: Backend = "auto",
    dtype: StorageDType = "f32",
) -> tuple[Array, Array, Array]: ...
def backends() -> list[dict[str, Any]]: ...

class Detector:
    def __init__(
        self,
        weights: Union[str, PathLike[str]],
        backend: Backend = "auto",
        tokenizer: Union[str, PathLike[str], None] = None,
    ) -> None: ...
    def detect(
        self,
        image_or_path: Union[str, PathLike[str], np.ndarray],
        labels: str = "hico",
        top_k: int = 100,
        person_only: bool = False,
        threshold: float = 0.0,
    ) -> list[dict[str, Any]]: ...
    def document(
        self,
        path: Union[str, PathLike[str]],
        labels: str = "hico",
        top_k: int = 100,
        person_only: bool = False,
        threshold: float = 0.0,
    ) -> str: ...
    def info(self) -> dict[str, Any]: ...
