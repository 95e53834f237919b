"""Build hook: a wheel carries the consoles' notebooks and the default grading rules.

The checkout keeps them in notebooks/consoles/ and data/ (top-level folders); a wheel has no
such folders, so they are copied into the package as hkops/_shipped/<same path> (see
hkops.config.shipped_path). Editable installs read them from the checkout and copy nothing.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

#: Checkout files a wheel carries (globs relative to the checkout).
SHIPPED = ["notebooks/consoles/*.ipynb", "data/grading_rules.toml"]


class BuildWithShippedFiles(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        root = Path(__file__).resolve().parent
        for pattern in SHIPPED:
            for source in sorted(root.glob(pattern)):
                target = Path(self.build_lib) / "hkops" / "_shipped" / source.relative_to(root)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)


setup(cmdclass={"build_py": BuildWithShippedFiles})
