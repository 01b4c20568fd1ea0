"""The web app: ``sound2sight serve --run DIR`` (see :mod:`sound2sight.web.server`)."""

from sound2sight.web.server import make_server, result_to_json, serve

__all__ = ["make_server", "serve", "result_to_json"]
