"""tox's inline plugin: let tox find the Python versions pyenv installed.

The `py313` environment (in the default list) and `py312` (on demand: `tox -e py312`) run
where those interpreters exist (tox skips them elsewhere). pyenv installs them under
``$PYENV_ROOT/versions/X.Y.Z/bin``, behind shims that answer only for the selected version, so
tox (through uv) would not find them; each such ``bin`` directory is appended to ``PATH`` for
tox's own interpreter discovery. Appended, not prepended: the interpreter that runs everything
else is unchanged.
"""

from __future__ import annotations

import glob
import os
from typing import Any

from tox.plugin import impl


@impl
def tox_add_core_config(core_conf: Any, state: Any) -> None:
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = sorted(glob.glob(os.path.join(root, "versions", "3.1[23].*", "bin")))
    path = os.environ.get("PATH", "").split(os.pathsep)
    extra = [d for d in found if d not in path]
    if extra:
        os.environ["PATH"] = os.pathsep.join([*path, *extra])
