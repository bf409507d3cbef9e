"""The web view's static files (HTML, JS, CSS) from the ``doozertw_web`` package.

An installed copy ships ``web/`` as the package ``doozertw_web``; a
checkout finds ``web/`` next to the ``doozertw`` package. Only the files
directly in that directory with a known type are served; there are no
directory listings.
"""

import importlib.resources
import pathlib

from twisted.web import pages, resource

import doozertw

INDEX = "index.html"
CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".ico": b"image/x-icon",
}


def web_directory():
    """The directory holding index.html; raises FileNotFoundError if none."""
    candidates = []
    try:
        root = importlib.resources.files("doozertw_web")
        candidates.append(pathlib.Path(str(root)))
    except (ModuleNotFoundError, TypeError):
        pass
    candidates.append(pathlib.Path(doozertw.__file__).resolve().parent.parent / "web")
    for directory in candidates:
        if (directory / INDEX).is_file():
            return directory
    raise FileNotFoundError("web view files (index.html) not found in "
                            + ", ".join(map(str, candidates)))


class StaticRoot(resource.Resource):
    """``/`` serves index.html; ``/<name>`` a file of the web view; the rest 404."""

    def __init__(self, directory):
        super().__init__()
        self.directory = pathlib.Path(directory)

    def getChild(self, name, request):
        if request.postpath:
            return pages.notFound()
        return StaticFile(self.directory, name.decode("utf-8", "replace") or INDEX)

    def render_GET(self, request):
        return StaticFile(self.directory, INDEX).render_GET(request)


class StaticFile(resource.Resource):
    isLeaf = True

    def __init__(self, directory, name):
        super().__init__()
        self.directory = directory
        self.name = name

    def render_GET(self, request):
        path = self.directory / self.name
        kind = CONTENT_TYPES.get(path.suffix)
        if kind is None or "/" in self.name or self.name.startswith(".") or not path.is_file():
            return pages.notFound().render(request)
        request.setHeader(b"content-type", kind)
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-content-type-options", b"nosniff")
        return path.read_bytes()


def static_resource(directory=None):
    return StaticRoot(directory or web_directory())
