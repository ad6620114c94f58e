"""TensorRT path without TensorRT: engine metadata, compatibility checks, engine cache and
selection, error paths, pn-build-engine's arguments, and the builder/runtime plumbing against
``FakeTensorRT`` (an onnxruntime-backed stand-in for the TensorRT 10 Python API)."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from export_fixtures import FakeTensorRT, fake_runtime_info

from perception_nodes.core.sam import tensorrt as eng
from perception_nodes.core.sam.decoder import decode_prompts
from perception_nodes.core.sam.tensorrt import (
    EngineMetadata,
    EngineMismatchError,
    EngineNotFoundError,
    EngineRequirements,
    RuntimeInfo,
    TensorRTNotAvailableError,
    TensorRTSamBackend,
    check_engine_compatibility,
)
from perception_nodes.core.weights.files import sha256_file
from perception_nodes.tools import build_engine as build_cmd


def _meta(**overrides) -> EngineMetadata:
    values = dict(
        model="vit_b",
        component="encoder",
        precision="fp16",
        tensorrt_version="10.3.0",
        gpu_name="NVIDIA GeForce RTX 4090",
        compute_capability="8.9",
        input_size=1024,
        embedding_shape=[256, 64, 64],
        profiles={
            "images": {
                "min": [1, 3, 1024, 1024],
                "opt": [1, 3, 1024, 1024],
                "max": [4, 3, 1024, 1024],
            }
        },
        source_onnx="/models/vit_b/encoder.onnx",
        source_onnx_sha256="a" * 64,
        source_checkpoint_sha256="b" * 64,
        build_time="2025-01-01T00:00:00Z",
    )
    values.update(overrides)
    return EngineMetadata(**values)


@pytest.fixture(autouse=True)
def _no_real_tensorrt(monkeypatch):
    """Make ``import tensorrt`` fail even where a TensorRT install exists."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def test_metadata_round_trip(tmp_path):
    meta = _meta()
    path = meta.save(tmp_path / "enc.engine.json")
    assert EngineMetadata.load(path) == meta
    assert eng.metadata_path(tmp_path / "enc.engine") == path


def test_metadata_errors(tmp_path):
    with pytest.raises(eng.EngineMetadataError, match="not found"):
        EngineMetadata.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(eng.EngineMetadataError, match="not valid JSON"):
        EngineMetadata.load(tmp_path / "bad.json")
    (tmp_path / "partial.json").write_text(json.dumps({"model": "vit_b"}))
    with pytest.raises(eng.EngineMetadataError, match="lacks the keys"):
        EngineMetadata.load(tmp_path / "partial.json")
    with pytest.raises(eng.EngineMetadataError, match="precision"):
        _meta(precision="int3")
    data = json.loads(_meta().to_json()) | {"future_key": 1}
    with pytest.raises(eng.EngineMetadataError, match="unknown fields .'future_key'."):
        EngineMetadata.from_dict(data)  # one policy for stored configs (core.records)


def test_compatible_system_has_no_problems():
    assert check_engine_compatibility(_meta(), fake_runtime_info()) == []


@pytest.mark.parametrize(
    "info, expected",
    [
        (
            fake_runtime_info(version="10.7.0"),
            "TensorRT version: engine built with 10.3.0, running 10.7.0",
        ),
        (fake_runtime_info(version=None), "TensorRT is not installed"),
        (fake_runtime_info(gpu="Orin", cc="8.7"), "compute capability: engine built for 8.9"),
        (fake_runtime_info(gpu="NVIDIA L40S"), "GPU: engine built on 'NVIDIA GeForce RTX 4090'"),
        (RuntimeInfo("10.3.0", None, None), "no CUDA GPU"),
    ],
)
def test_each_system_mismatch_is_reported(info, expected):
    problems = check_engine_compatibility(_meta(), info)
    assert len(problems) == 1 and expected in problems[0]


def test_requirement_mismatches_each_reported():
    req = EngineRequirements(
        model="vit_l",
        component="decoder",
        precision="fp32",
        input_size=512,
        embedding_shape=(256, 32, 32),
        checkpoint_sha256="c" * 64,
    )
    problems = check_engine_compatibility(_meta(), fake_runtime_info(version="10.4.0"), req)
    text = "\n".join(problems)
    assert len(problems) == 7
    for word in (
        "TensorRT version",
        "model",
        "component",
        "precision: engine has 'fp16', expected 'fp32'",
        "input size: engine has 1024, expected 512",
        "embedding shape",
        "checkpoint",
    ):
        assert word in text


def test_mismatch_error_names_problems_and_rebuild_command(tmp_path):
    engine_file = tmp_path / "encoder.engine"
    engine_file.write_bytes(b"x")
    _meta().save(eng.metadata_path(engine_file))
    with pytest.raises(EngineMismatchError) as info:
        eng.load_engine_metadata_checked(engine_file, fake_runtime_info(version="10.7.0", cc="8.7"))
    msg = str(info.value)
    assert "TensorRT version" in msg and "compute capability" in msg
    assert (
        "pn-build-engine --onnx /models/vit_b/encoder.onnx --precision fp16 --out "
        f"{engine_file} --max-batch 4"
    ) in msg
    assert info.value.rebuild_command in msg and len(info.value.problems) == 2


def test_cache_key_and_dir(tmp_path, monkeypatch):
    key = eng.engine_cache_key("vit_b", "NVIDIA GeForce RTX 4090", "10.3.0", "fp16")
    assert key == "vit_b__nvidia-geforce-rtx-4090__trt10.3.0__fp16"
    assert key != eng.engine_cache_key("vit_b", "NVIDIA GeForce RTX 4090", "10.3.0", "fp32")
    assert key != eng.engine_cache_key("vit_b", "Orin", "10.3.0", "fp16")
    with pytest.raises(ValueError, match="precision"):
        eng.engine_cache_key("vit_b", "x", "10", "int8x")
    monkeypatch.setenv("PERCEPTION_NODES_CACHE", str(tmp_path))
    assert eng.engine_cache_dir() == tmp_path / "engines"


def _install_engines(cache, info, **overrides):
    key = eng.engine_cache_key("vit_b", info.gpu_name, info.tensorrt_version, "fp16")
    for component in ("encoder", "decoder"):
        path = cache / key / f"{component}.engine"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"engine")
        _meta(component=component, **overrides).save(eng.metadata_path(path))
    return cache / key


def test_find_engines_selection(tmp_path):
    info = fake_runtime_info()
    sel = eng.find_engines("vit_b", "fp16", info, tmp_path, onnx_dir=tmp_path / "onnx")
    assert not sel.found and len(sel.build_commands) == 2
    assert "encoder engine missing" in sel.problems[0]
    assert f"--onnx {tmp_path / 'onnx' / 'encoder.onnx'}" in sel.build_commands[0]
    with pytest.raises(EngineNotFoundError, match="Build them with"):
        eng.select_engines("vit_b", "fp16", info, tmp_path)
    folder = _install_engines(tmp_path, info)
    assert eng.select_engines("vit_b", "fp16", info, tmp_path) == (
        folder / "encoder.engine",
        folder / "decoder.engine",
    )
    sel = eng.find_engines(
        "vit_b", "fp16", info, tmp_path, requirements=EngineRequirements(input_size=512)
    )
    assert not sel.found and "input size" in sel.problems[0]


def test_find_engines_stale_metadata_in_cache(tmp_path):
    info = fake_runtime_info()
    _install_engines(tmp_path, info, tensorrt_version="10.0.1")  # copied from elsewhere
    sel = eng.find_engines("vit_b", "fp16", info, tmp_path)
    assert not sel.found and all("TensorRT version" in p for p in sel.problems)
    assert sel.build_commands[0].startswith("pn-build-engine --onnx /models/vit_b/encoder.onnx")


def test_no_tensorrt_errors(tmp_path):
    with pytest.raises(TensorRTNotAvailableError, match="pip install tensorrt") as info:
        TensorRTSamBackend(tmp_path / "e.engine", tmp_path / "d.engine")
    assert "onnxruntime" in str(info.value) and "JetPack" in str(info.value)
    with pytest.raises(EngineNotFoundError, match="TensorRT is not installed"):
        eng.find_engines("vit_b", "fp16", RuntimeInfo(None, "gpu", "8.9"), tmp_path)


def test_gather_runtime_info_injected():
    class Cuda:
        @staticmethod
        def is_available():
            return True

        @staticmethod
        def get_device_name(i):
            return "NVIDIA H100 80GB HBM3"

        @staticmethod
        def get_device_capability(i):
            return (9, 0)

    info = eng.gather_runtime_info(FakeTensorRT("10.8.0"), cuda=Cuda)
    assert info == RuntimeInfo("10.8.0", "NVIDIA H100 80GB HBM3", "9.0")
    assert eng.gather_runtime_info(True).tensorrt_version is None  # import blocked
    assert eng.gather_runtime_info(None).tensorrt_version is None


def test_profile_spec_validation():
    shapes = eng.profile_shapes("decoder", 1024, [256, 64, 64], eng.ProfileSpec())
    assert shapes["point_coords"] == {"min": [1, 1, 2], "opt": [64, 2, 2], "max": [1024, 8, 2]}
    assert shapes["image_embeddings"]["max"] == [1, 256, 64, 64]
    with pytest.raises(ValueError, match="opt_prompts"):
        eng.ProfileSpec(opt_prompts=2048)
    with pytest.raises(ValueError, match="must be >= 1, got 0"):
        eng.ProfileSpec(max_points=0, opt_points=0)


def test_build_command_arguments_and_failures(tiny_export, tmp_path, capsys):
    rc = build_cmd.main(
        ["--onnx", str(tiny_export.decoder_path), "--out", str(tmp_path / "d.engine")]
    )
    err = capsys.readouterr().err
    assert rc == 3 and "TensorRT is not installed" in err and "trtexec" in err
    assert not (tmp_path / "d.engine").exists()
    assert build_cmd.main(["--onnx", str(tmp_path / "missing.onnx")]) == 2
    assert "not found" in capsys.readouterr().err
    assert (
        build_cmd.main(
            ["--onnx", str(tiny_export.decoder_path), "--opt-prompts", "9", "--max-prompts", "4"]
        )
        == 2
    )
    assert "exceeds" in capsys.readouterr().err
    assert build_cmd.main(["--onnx", str(tiny_export.decoder_path), "--workspace-gib", "0"]) == 2
    with pytest.raises(SystemExit):
        build_cmd.main(["--onnx", "x.onnx", "--precision", "int8"])


def test_build_with_fake_tensorrt_writes_engine_metadata_and_timing_cache(tiny_export, tmp_path):
    trt = FakeTensorRT("10.3.0")
    info = fake_runtime_info()
    rc = build_cmd.main(
        [
            "--onnx",
            str(tiny_export.decoder_path),
            "--cache-dir",
            str(tmp_path),
            "--max-prompts",
            "128",
            "--opt-prompts",
            "32",
            "--workspace-gib",
            "2",
        ],
        trt=trt,
        runtime_info=info,
    )
    assert rc == 0
    key = eng.engine_cache_key("sam_tiny_test", info.gpu_name, "10.3.0", "fp16")
    engine_path = tmp_path / key / "decoder.engine"
    meta = EngineMetadata.load(eng.metadata_path(engine_path))
    assert meta.component == "decoder" and meta.precision == "fp16" and meta.multimask == "both"
    assert meta.profiles["point_coords"]["max"] == [128, 8, 2]
    assert meta.source_checkpoint_sha256 == tiny_export.metadata["checkpoint_sha256"]
    assert meta.source_onnx_sha256 == sha256_file(tiny_export.decoder_path)
    record = trt.built[0]
    assert record["flags"] == ["FP16"] and record["pools"] == {"WORKSPACE": 2 << 30}
    assert record["profiles"][0]["point_labels"] == [[1, 1], [32, 2], [128, 8]]
    assert (tmp_path / "timing.cache").read_bytes().startswith(b"timing-cache:")


def test_tensorrt_backend_with_fake_runtime_matches_torch(tiny_export, tiny_sam, tmp_path):
    trt, info = FakeTensorRT("10.3.0"), fake_runtime_info()
    paths = {}
    for component, onnx_path in (
        ("encoder", tiny_export.encoder_path),
        ("decoder", tiny_export.decoder_path),
    ):
        paths[component] = tmp_path / f"{component}.engine"
        assert (
            build_cmd.main(
                [
                    "--onnx",
                    str(onnx_path),
                    "--out",
                    str(paths[component]),
                    "--max-prompts",
                    "16",
                    "--opt-prompts",
                    "4",
                    "--timing-cache",
                    str(tmp_path / "t.cache"),
                ],
                trt=trt,
                runtime_info=info,
            )
            == 0
        )
    backend = TensorRTSamBackend(
        paths["encoder"],
        paths["decoder"],
        model="sam_tiny_test",
        precision="fp16",
        device="cpu",
        trt=trt,
        runtime_info=info,
    )
    assert backend.input_size == 1024 and backend.embedding_shape == (256, 64, 64)
    gen = torch.Generator().manual_seed(5)
    images = torch.randn(1, 3, 1024, 1024, generator=gen)
    embedding = backend.encode(images)
    with torch.no_grad():
        ref_emb = tiny_sam.image_encoder(images)
    assert (embedding - ref_emb).abs().max() <= 1e-4
    coords, labels = torch.rand(3, 2, 2, generator=gen) * 1024, torch.tensor([[1.0, -1.0]] * 3)
    out = backend.decode(ref_emb, coords, labels, multimask_output=False)
    with torch.no_grad():
        ref = decode_prompts(tiny_sam, ref_emb, coords, labels, multimask_output=False)
    assert out.low_res_logits.shape == (3, 1, 256, 256)
    assert (out.low_res_logits - ref.low_res_logits).abs().max() <= 1e-3
    assert (out.mask_tokens - ref.mask_tokens).abs().max() <= 1e-4
    with pytest.raises(ValueError, match="outside the engine's profile"):
        backend.decode(ref_emb, torch.zeros(17, 1, 2), torch.ones(17, 1))
    # the same engines on another TensorRT version: refused before deserialization
    with pytest.raises(EngineMismatchError, match="TensorRT version.*\n.*\n.*pn-build-engine"):
        TensorRTSamBackend(
            paths["encoder"],
            paths["decoder"],
            device="cpu",
            trt=FakeTensorRT("10.9.0"),
            runtime_info=fake_runtime_info("10.9.0"),
        )
    with pytest.raises(EngineMismatchError, match="precision"):
        TensorRTSamBackend(
            paths["encoder"],
            paths["decoder"],
            precision="fp32",
            device="cpu",
            trt=trt,
            runtime_info=info,
        )
    paths["decoder"].write_bytes(b"corrupted")
    with pytest.raises(RuntimeError, match="corrupted"):
        TensorRTSamBackend(
            paths["encoder"], paths["decoder"], device="cpu", trt=trt, runtime_info=info
        )
