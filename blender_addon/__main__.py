"""`python -m blender_addon ...` where only the bpy module exists (no Blender executable)."""

import sys

from .cli import main

sys.exit(main())
