# Source this file to use the project's environment in a shell:  source scripts/env.sh
# It activates .venv (ROS 2 Kilted from PyPI wheels + the ML stack) and sets what the ROS
# prefix inside it needs. Every Makefile target and script sources it; nothing is set by hand.
_PN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export PN_ROOT="$_PN_ROOT"
export PN_VENV="${PN_VENV:-$_PN_ROOT/.venv}"
if [ -f "$PN_VENV/bin/activate" ]; then
  # shellcheck disable=SC1091
  . "$PN_VENV/bin/activate"
fi
export AMENT_PREFIX_PATH="$PN_VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# Keep discovery on this machine unless the user says otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
# Camera-sized samples over shared memory (Fast DDS's default 512 KiB segment silently drops
# every best-effort image above it); see perception_nodes/config/fastdds_large_images.xml.
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$_PN_ROOT/perception_nodes/config/fastdds_large_images.xml}"
export PERCEPTION_NODES_CACHE="${PERCEPTION_NODES_CACHE:-$HOME/.cache/perception_nodes}"
unset _PN_ROOT
