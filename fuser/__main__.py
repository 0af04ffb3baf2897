"""``python -m fuser`` runs the ``onnx-fuser`` command."""

import sys

from fuser.cli import main

sys.exit(main())
