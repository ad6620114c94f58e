"""CLIP in the weights registry: `pn-fetch-weights clip` and `pn-fetch-weights` (the default SAM
+ CLIP) over a local HTTP server serving files under their real URL paths (no outside network),
the offline message, the weights index, one template list for labels and queries, and
`pn-demo` on a "connected" machine: it downloads both default models by itself and the node
uses them without configuration (no generated-weights banner)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from weights_server import serve_folder

from perception_nodes.core.sam.registry import get_spec
from perception_nodes.core.weights.clip import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_CLIP_TAG,
    get_clip_weights,
)
from perception_nodes.core.weights.files import (
    INDEX_ENV,
    CheckpointError,
    cached_path,
    sha256_file,
)
from perception_nodes.tools import fetch_weights

HF_FILE = (
    "laion/CLIP-ViT-B-16-laion2B-s34B-b88K/resolve/7288da5a0d6f0b51c4a2b27c624837a9236d0112/"
    "open_clip_model.safetensors"
)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def publish_frame(root: Path, url_path: str, data: bytes) -> Path:
    path = root / url_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _mirror_sam(monkeypatch, tmp_path: Path, port: int, served: Path) -> None:
    """SAM's official sha256 is pinned: serve our file under the real path and pin ITS sha256
    through the weights index (what a private mirror does)."""
    spec = get_spec("vit_t")
    index = {
        "vit_t": {
            "url": f"http://127.0.0.1:{port}{urlparse(spec.url).path}",
            "sha256": sha256_file(served),
            "size_bytes": served.stat().st_size,
        }
    }
    (tmp_path / "index.json").write_text(json.dumps(index))
    monkeypatch.setenv(INDEX_ENV, str(tmp_path / "index.json"))


def test_registry_entry_is_open_clips_default_source(monkeypatch):
    import open_clip

    spec = get_clip_weights()
    assert (
        (spec.model, spec.tag)
        == ("ViT-B-16", "laion2b_s34b_b88k")
        == (DEFAULT_CLIP_MODEL, DEFAULT_CLIP_TAG)
    )
    assert open_clip.get_pretrained_cfg(spec.model, spec.tag)["hf_hub"].rstrip("/") == spec.hf_repo
    assert spec.url == f"https://huggingface.co/{HF_FILE}"
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example:8080/")
    assert get_clip_weights().url == f"http://mirror.example:8080/{HF_FILE}"
    with pytest.raises(KeyError, match="no downloadable weights registered"):
        get_clip_weights("RN50")


def test_fetch_clip_and_defaults_over_http(tmp_path, monkeypatch, capsys):
    root, cache = tmp_path / "www", tmp_path / "cache"
    clip_bytes, sam_bytes = os.urandom(3 << 20), os.urandom(1 << 20)
    publish_frame(root, HF_FILE, clip_bytes)
    sam_served = publish_frame(root, urlparse(get_spec("vit_t").url).path, sam_bytes)
    with serve_folder(root) as srv:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{srv.server_port}")
        _mirror_sam(monkeypatch, tmp_path, srv.server_port, sam_served)
        assert fetch_weights.main(["clip", "--cache-dir", str(cache), "--no-progress"]) == 0
        clip_path = cached_path(get_clip_weights(), cache)
        assert (
            clip_path.read_bytes() == clip_bytes
            and clip_path.name == "open_clip_ViT-B-16_laion2b_s34b_b88k.safetensors"
        )
        assert srv.requests == [f"/{HF_FILE}"]
        # no name: the defaults the node and pn-demo use (SAM vit_t + CLIP); CLIP is cached already
        assert fetch_weights.main(["--cache-dir", str(cache), "--no-progress"]) == 0
        assert cached_path(get_spec("vit_t"), cache).read_bytes() == sam_bytes
        assert len(srv.requests) == 2 and srv.requests[1].endswith("/mobile_sam.pt")
    out = capsys.readouterr().out
    assert f"ok     clip:ViT-B-16: {clip_path}" in out and "ok     vit_t" in out
    assert fetch_weights.main(["--list", "--cache-dir", str(cache)]) == 0
    row = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("clip:ViT-B-16")
    )
    assert row.split()[-1] == "yes" and "MIT" in row


def test_offline_clip_fetch_names_file_path_and_url(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_free_port()}")  # nothing listens
    rc = fetch_weights.main(
        ["clip", "--cache-dir", str(tmp_path), "--no-progress", "--timeout", "5"]
    )
    err = capsys.readouterr().err
    spec = get_clip_weights()
    assert rc == 1 and str(cached_path(spec, tmp_path)) in err and spec.url in err
    assert "pn-fetch-weights clip:ViT-B-16" in err and "not pinned" in err


def test_weights_index_errors_are_loud(tmp_path, monkeypatch):
    monkeypatch.setenv(INDEX_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(CheckpointError, match="cannot be read"):
        get_spec("vit_t")
    (tmp_path / "bad.json").write_text(json.dumps({"vit_t": {"checksum": "x"}}))
    monkeypatch.setenv(INDEX_ENV, str(tmp_path / "bad.json"))
    with pytest.raises(CheckpointError, match="must be an object with keys"):
        get_spec("vit_t")


def test_banner_names_generated_parts_and_the_command_that_replaces_them():
    from perception_nodes.tools.demo_weights import untrained_banner

    text = untrained_banner(["SAM vit_t", "CLIP ViT-B-16"])
    assert "GENERATED (seeded random) weights for: SAM vit_t, CLIP ViT-B-16" in text
    assert "`pn-fetch-weights vit_t clip:ViT-B-16`" in text


def test_labels_and_queries_use_one_template_list(tmp_path):
    import yaml

    from perception_nodes.core.config import DEFAULT_TEMPLATES, PipelineConfig
    from perception_nodes.core.pipeline import Pipeline

    shipped = yaml.safe_load(
        (
            Path(__file__).resolve().parents[1] / "perception_nodes" / "config" / "scene_graph.yaml"
        ).read_text()
    )["perception_node"]["ros__parameters"]["vocabulary"]["templates"]
    assert tuple(shipped) == DEFAULT_TEMPLATES
    config = PipelineConfig(
        sam_model="sam_tiny_test",
        clip_model="pn-clip-tiny-test",
        relations_type="none",
        weights_cache_dir=str(tmp_path),
        vocabulary_labels=["cup"],
    )
    pipeline = Pipeline.load(config)
    assert pipeline.vocabulary.snapshot().templates == DEFAULT_TEMPLATES
    assert pipeline.classifier._queries.templates == DEFAULT_TEMPLATES


# ----------------------------------------------------------------------------- pn-demo, connected
def _write_unmarked_weights(root: Path) -> None:
    """Seeded random weights of the REAL default architectures, saved like the official files
    (no generated-weights marker) under their real URL paths: the node cannot tell them from
    downloaded ones, which is the point (this checks the flow, not the quality of labels)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    sam = get_spec("vit_t").builder()
    sam_path = root / urlparse(get_spec("vit_t").url).path.lstrip("/")
    sam_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sam.state_dict(), sam_path)
    clip = open_clip.create_model(DEFAULT_CLIP_MODEL, pretrained=None)
    clip_path = root / HF_FILE
    clip_path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(clip_path))


@pytest.mark.ros
def test_demo_on_a_connected_machine_downloads_both_models_and_uses_them(tmp_path, monkeypatch):
    import yaml

    from perception_nodes.tools.graph_runner import DEFAULT_CONFIG

    root, cache, out = tmp_path / "www", tmp_path / "cache", tmp_path / "demo"
    _write_unmarked_weights(root)
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())  # random weights: keep every mask
    config["perception_node"]["ros__parameters"]["amg"].update(
        pred_iou_thresh=0.0, stability_score_thresh=0.0, max_regions=8
    )
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with serve_folder(root) as srv:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{srv.server_port}")
        _mirror_sam(
            monkeypatch,
            tmp_path,
            srv.server_port,
            root / urlparse(get_spec("vit_t").url).path.lstrip("/"),
        )
        env = dict(os.environ, PERCEPTION_NODES_CACHE=str(cache))
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "perception_nodes.tools.demo",
                "--images",
                "astronaut",
                "--max-side",
                "128",
                "--points-per-side",
                "4",
                "--labels",
                "cup",
                "rocket",
                "--out-dir",
                str(out),
                "--config-file",
                str(tmp_path / "config.yaml"),
                "--start-timeout",
                "600",
                "--frame-timeout",
                "400",
            ],
            capture_output=True,
            text=True,
            timeout=1200,
            env=env,
        )
        requests = list(srv.requests)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(Path(r).name for r in requests) == [
        "mobile_sam.pt",
        "open_clip_model.safetensors",
    ]
    assert (
        cached_path(get_spec("vit_t"), cache).is_file()
        and cached_path(get_clip_weights(), cache).is_file()
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["real_sam_weights"] and summary["real_clip_weights"]
    assert summary["weights_meaningful"] is True and summary["generated_parts"] == []
    assert summary["diagnostics"]["sam_untrained"] == "False"
    assert "GENERATED" not in proc.stdout and summary["frames"][0]["regions"] >= 1
    assert not (cache / "generated").exists()
