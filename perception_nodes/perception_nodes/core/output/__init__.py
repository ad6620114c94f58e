"""What a frame's result becomes: scene graph (JSON), RLE masks, label image and 3D centroids, overlay."""
