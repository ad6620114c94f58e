"""rosbag2 recordings in, scene graphs and training data out (``pn-process-bag``).

- :mod:`.settings`: the node's parameter YAML -> pipeline config + node settings (one mapping).
- :mod:`.topics`: which topics of a recording are camera colour/depth/CameraInfo streams.
- :mod:`.frames`: reading a recording (rosbags), decoding, pairing depth/CameraInfo by stamp.
- :mod:`.messages`: one frame's output messages (the node's conversions), serialized (rclpy).
- :mod:`.output`: the output folder: MCAP parts, the journal of done frames, resume.
- :mod:`.training_data`: COCO instances + OpenPSG relations of the processed frames.
- :mod:`.runner`: one recording end to end (read-ahead, batched SAM encoder, progress).
- :mod:`.workers`: the models in worker processes, frames in parallel (``--workers``).
- :mod:`.malloc`: glibc malloc tuned for throughput in the model processes (``--malloc``).
- :mod:`.ray_runner`: many recordings on Ray actors (optional dependency).
"""
