"""Model weights: the download cache, checkpoint files, CLIP's registry, the generated-weights policy."""
