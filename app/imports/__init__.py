"""The imports blueprint: starting imports and following them, as JSON and as pages."""

from flask import Blueprint

from app.imports import display

bp = Blueprint("imports", __name__)
display.register(bp)

from app.imports import cleanup, fixes_routes, routes, undo_routes  # noqa: E402,F401  (they register on bp)
