"""Segment Anything: model registry, weights, encoder/decoder backends, mask generation."""
