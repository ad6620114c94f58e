"""pn-demo's weights check: are the official SAM / CLIP weights cached (downloading them when
allowed), and the loud notice printed when the node runs GENERATED (seeded random) weights."""

from __future__ import annotations

BANNER = "!" * 100


def weights_available(spec, cache_dir: str, fetch: bool, what: str) -> bool:
    """True when the registry file of ``spec`` is cached (downloading it if allowed)."""
    from perception_nodes.core.weights.files import CheckpointError, cached_path
    from perception_nodes.core.weights.files import fetch as fetch_weights

    if not spec.url:
        return False
    if cached_path(spec, cache_dir or None).is_file():
        return True
    if not fetch:
        return False
    print(f"pn-demo: {what} weights are not cached; trying to download them ({spec.url})")
    try:
        fetch_weights(spec, cache_dir or None, progress=True, timeout=20.0)
        return True
    except (CheckpointError, OSError) as exc:
        print(f"pn-demo: download failed: {str(exc).splitlines()[0]}")
        return False


def sam_weights_available(model: str, cache_dir: str, fetch: bool) -> bool:
    """True when official weights for SAM ``model`` are cached (downloading them if allowed)."""
    from perception_nodes.core.sam.registry import get_spec

    return weights_available(get_spec(model), cache_dir, fetch, f"SAM {model}")


def clip_weights_available(model: str, cache_dir: str, fetch: bool) -> bool:
    """True when registry weights for CLIP ``model`` are cached (downloading them if allowed)."""
    from perception_nodes.core.weights.clip import get_clip_weights

    try:
        spec = get_clip_weights(model)
    except KeyError:
        return False
    return weights_available(spec, cache_dir, fetch, f"CLIP {model}")


def untrained_banner(parts: list[str]) -> str:
    """The notice for GENERATED weights; ``parts`` as the node reports them (``"SAM vit_t"``)."""
    from perception_nodes.core.pipeline_factory import fetch_command
    from perception_nodes.core.weights.files import GENERATED_WEIGHTS

    command = fetch_command(parts)
    how = (
        f"`{command}` (needs a network), then run the demo again"
        if command
        else "none to download (test-only models; run without --quick)"
    )
    return "\n".join(
        [
            BANNER,
            f"!! {GENERATED_WEIGHTS} for: " + ", ".join(parts),
            "!! Their output below is NOT meaningful; only the plumbing is real.",
            f"!! Real weights: {how}.",
            BANNER,
        ]
    )
