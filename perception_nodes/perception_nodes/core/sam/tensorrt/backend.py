"""The ``tensorrt`` SAM backend: serialized TensorRT 10 engines built by ``pn-build-engine``.

Before TensorRT sees an engine file, its JSON sidecar is checked against this system
(:func:`perception_nodes.core.sam.tensorrt.metadata.check_engine_compatibility`): a mismatching TensorRT
version, GPU, precision or input size raises ``EngineMismatchError`` with the rebuild command
instead of crashing inside TensorRT. ``import tensorrt`` happens only when a backend is created
(:func:`perception_nodes.core.sam.tensorrt.runtime.import_tensorrt`); without it
``TensorRTNotAvailableError`` says how to install it and which backends work instead.

Execution uses the TensorRT 10 name-based API: ``set_input_shape`` for the dynamic axes,
``set_tensor_address`` with torch-allocated CUDA buffers, ``execute_async_v3`` on the current
torch CUDA stream (so results are ordered with the surrounding torch work, no host copies).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from perception_nodes.core.sam.backend import DecoderOutput, SamBackend
from perception_nodes.core.sam.tensorrt.cache import select_engines
from perception_nodes.core.sam.tensorrt.metadata import (
    EngineMetadata,
    EngineRequirements,
    load_engine_metadata_checked,
)
from perception_nodes.core.sam.tensorrt.runtime import (
    RuntimeInfo,
    gather_runtime_info,
    import_tensorrt,
)
from perception_nodes.core.weights.files import GENERATED_WEIGHTS

logger = logging.getLogger(__name__)


class TensorRTSamBackend(SamBackend):
    """SAM on TensorRT engines.

    Args:
        encoder_path / decoder_path: engine files (each with its ``.json`` sidecar); when
            both are None, ``model`` + ``precision`` select them from the engine cache.
        model: registry name, for the cache lookup and to check the engines' metadata.
        precision: expected engine precision (``None``: accept what the engines say).
        cache_dir: engine cache directory (default ``$PERCEPTION_NODES_CACHE/engines``).
        device: CUDA device.
        trt / runtime_info: injected TensorRT module and system description (tests).
    """

    name = "tensorrt"

    def __init__(
        self,
        encoder_path: str | os.PathLike | None,
        decoder_path: str | os.PathLike | None,
        *,
        model: str | None = None,
        precision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        device: str | torch.device = "cuda",
        trt: ModuleType | None = None,
        runtime_info: RuntimeInfo | None = None,
    ) -> None:
        trt = trt if trt is not None else import_tensorrt()
        info = runtime_info or gather_runtime_info(trt)
        if encoder_path is None and decoder_path is None:
            if model is None:
                raise ValueError(
                    "give encoder_path and decoder_path, or model= to pick engines "
                    "from the engine cache"
                )
            encoder_path, decoder_path = select_engines(model, precision or "fp16", info, cache_dir)
        elif encoder_path is None or decoder_path is None:
            raise ValueError("give both encoder_path and decoder_path (or neither, with model=)")
        self.device = torch.device(device)
        enc_req = EngineRequirements(model=model, component="encoder", precision=precision)
        self.encoder_metadata = load_engine_metadata_checked(encoder_path, info, enc_req)
        dec_req = EngineRequirements(
            model=self.encoder_metadata.model,
            component="decoder",
            precision=precision,
            input_size=self.encoder_metadata.input_size,
            embedding_shape=tuple(self.encoder_metadata.embedding_shape),
            checkpoint_sha256=self.encoder_metadata.source_checkpoint_sha256 or None,
        )
        self.decoder_metadata = load_engine_metadata_checked(decoder_path, info, dec_req)
        self.input_size = self.encoder_metadata.input_size
        c, h, w = self.encoder_metadata.embedding_shape
        self.embedding_shape = (c, h, w)
        self.decoder_mode = self.decoder_metadata.multimask or "both"
        self.untrained = bool(self.encoder_metadata.untrained or self.decoder_metadata.untrained)
        if self.untrained:
            logger.warning(
                "TensorRT engines %s were built from %s: output is not meaningful",
                Path(encoder_path).parent,
                GENERATED_WEIGHTS,
            )
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._encoder = _EngineRunner(
            trt, self._runtime, Path(encoder_path), self.encoder_metadata, self.device
        )
        self._decoder = _EngineRunner(
            trt, self._runtime, Path(decoder_path), self.decoder_metadata, self.device
        )

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        s = self.input_size
        if (
            not isinstance(images, torch.Tensor)
            or images.ndim != 4
            or tuple(images.shape[1:]) != (3, s, s)
            or images.shape[0] == 0
        ):
            raise ValueError(
                f"images must be a tensor (B>=1, 3, {s}, {s}), got "
                f"{getattr(images, 'shape', type(images))}"
            )
        return self._encoder.run({"images": images})["image_embeddings"]

    @torch.no_grad()
    def decode(
        self,
        embedding: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        multimask_output: bool = True,
        iou_threshold: float | None = None,
    ) -> DecoderOutput:  # logits of every prompt (the engine upscales them all)
        if tuple(embedding.shape) != (1, *self.embedding_shape):
            raise ValueError(
                f"embedding must have shape (1, {self.embedding_shape}), got "
                f"{tuple(embedding.shape)}"
            )
        if (
            point_coords.ndim != 3
            or point_coords.shape[-1] != 2
            or tuple(point_labels.shape) != tuple(point_coords.shape[:2])
        ):
            raise ValueError(
                f"point_coords must be (P, K, 2) and point_labels (P, K), got "
                f"{tuple(point_coords.shape)} and {tuple(point_labels.shape)}"
            )
        if self.decoder_mode == "both":
            select = slice(1, None) if multimask_output else slice(0, 1)
        elif (self.decoder_mode == "multimask") == bool(multimask_output):
            select = slice(None)
        else:
            raise ValueError(
                f"this engine has only the {self.decoder_mode} decoder output; "
                "rebuild it from an ONNX exported with both outputs"
            )
        out = self._decoder.run(
            {
                "image_embeddings": embedding,
                "point_coords": point_coords,
                "point_labels": point_labels,
            }
        )
        return DecoderOutput(
            out["low_res_logits"][:, select],
            out["iou_predictions"][:, select],
            out["mask_tokens"][:, select],
        )


class _EngineRunner:
    """One deserialized engine + execution context; runs it on torch tensors."""

    def __init__(
        self,
        trt: ModuleType,
        runtime: Any,
        path: Path,
        metadata: EngineMetadata,
        device: torch.device,
    ) -> None:
        self.path = path
        self.metadata = metadata
        self.device = device
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise RuntimeError(
                f"TensorRT could not deserialize {path} although its metadata matches this "
                "system: the file is probably corrupted; rebuild it with pn-build-engine"
            )
        self.engine = engine
        self.context = engine.create_execution_context()
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(name)
        self._lock = threading.Lock()  # one execution context: one call at a time

    def _check_profile(self, name: str, shape: tuple[int, ...]) -> None:
        ranges = self.metadata.profiles.get(name)
        if ranges is None:
            return
        low, high = ranges["min"], ranges["max"]
        if len(shape) != len(low) or any(s < a or s > b for s, a, b in zip(shape, low, high)):
            raise ValueError(
                f"{name} of shape {shape} is outside the engine's profile {low}..{high} "
                f"({self.path}); rebuild with larger limits (pn-build-engine --max-prompts / "
                "--max-points / --max-batch) or send smaller batches"
            )

    def run(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run on ``inputs`` (by tensor name); outputs by name, on ``self.device``."""
        missing = set(self.inputs) - set(inputs)
        if missing:
            raise ValueError(f"engine {self.path} needs inputs {sorted(missing)}")
        with self._lock:
            keep = []
            for name in self.inputs:
                tensor = inputs[name].to(self.device, torch.float32).contiguous()
                self._check_profile(name, tuple(tensor.shape))
                keep.append(tensor)
                self.context.set_input_shape(name, tuple(tensor.shape))
                self.context.set_tensor_address(name, tensor.data_ptr())
            outputs = {}
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                out = torch.empty(shape, dtype=torch.float32, device=self.device)
                self.context.set_tensor_address(name, out.data_ptr())
                outputs[name] = out
            stream = (
                torch.cuda.current_stream(self.device).cuda_stream
                if self.device.type == "cuda"
                else 0
            )
            if not self.context.execute_async_v3(stream):
                raise RuntimeError(f"TensorRT execution of {self.path} failed (see its log)")
            del keep  # inputs stay referenced until enqueued; the stream orders later reuse
        return outputs
