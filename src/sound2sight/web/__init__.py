"""The web app: ``sound2sight serve --run DIR`` (FastAPI app in :mod:`sound2sight.web.server`,
uvicorn in :mod:`sound2sight.web.serving`)."""

from sound2sight.web.server import Limits, create_app, result_to_json
from sound2sight.web.serving import make_server, serve

__all__ = ["Limits", "create_app", "make_server", "serve", "result_to_json"]
