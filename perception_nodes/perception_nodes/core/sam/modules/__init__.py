"""Restructured (exact) SAM decoder modules; see :mod:`.prompt_decoder`."""

from perception_nodes.core.sam.modules.prompt_decoder import (
    DecodedPrompts,
    ImageContext,
    PromptDecoder,
    decoder_state_dict,
    embed_points,
)

__all__ = ["DecodedPrompts", "ImageContext", "PromptDecoder", "decoder_state_dict", "embed_points"]
