"""Template files (shell): a queue's Jinja2 templates as read from disk, for render's pure Templates.

The queue's own folder first, then the shared folder, then the defaults shipped in the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jinja2

from mailsvc.render import Templates


def template_loader(folders: Sequence[Path]) -> jinja2.BaseLoader:
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(f)) for f in folders]
    loaders.append(jinja2.PackageLoader("mailsvc.templates", ""))
    return jinja2.ChoiceLoader(loaders)


def load_templates(folders: Sequence[Path]) -> Templates:
    return Templates(template_loader(folders))
