"""Make the CMake exports of the ROS 2 PyPI wheels resolve on this machine.

The wheels' ``share/*/cmake/export_*__rosidl_generator_pyExport.cmake`` files carry include
paths of the machine that built them (``/opt/python/cp311-cp311/...``: the Python headers and
numpy's ``_core/include``). CMake's generate step then fails with "includes non-existent path".
This rewrites those paths to this interpreter's include dir and numpy's include dir. Idempotent.

Usage: python patch_ros_cmake.py <prefix>
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

FOREIGN_PYTHON_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
FOREIGN_NUMPY_INCLUDE = re.compile(
    r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/(?:_)?core/include"
)


def patch(prefix: Path) -> int:
    python_include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    if not Path(python_include, "Python.h").is_file():
        raise SystemExit(f"Python headers not found at {python_include}: install python3-dev")
    changed = 0
    for path in sorted(prefix.glob("share/*/cmake/*.cmake")):
        text = path.read_text()
        if "/opt/python/" not in text:
            continue
        new = FOREIGN_NUMPY_INCLUDE.sub(numpy_include, text)
        new = FOREIGN_PYTHON_INCLUDE.sub(python_include, new)
        if "/opt/python/" in new:
            raise SystemExit(f"{path}: unrecognised foreign path left after patching")
        path.write_text(new)
        changed += 1
    return changed


if __name__ == "__main__":
    n = patch(Path(sys.argv[1] if len(sys.argv) > 1 else sys.prefix))
    print(f"patched {n} CMake export file(s)")
