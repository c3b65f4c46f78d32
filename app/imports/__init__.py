"""The imports blueprint: starting imports and following them, as JSON and as pages."""

from flask import Blueprint

from app.imports import display

bp = Blueprint("imports", __name__)
display.register(bp)

# noqa: E402,F401 below: the routes register on bp, and the modules' tasks register with the worker.
from app.imports import (  # noqa: E402,F401
    cleanup,
    fixes_routes,
    following,
    listing,
    mappings,
    review,
    routes,
    undo_routes,
)
