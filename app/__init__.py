"""DataFlow: import contact spreadsheets into PostgreSQL."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from flask import Flask, g, request

from app.config import load_settings

ROOT = Path(__file__).resolve().parent.parent


def create_app(env: dict[str, str] | None = None) -> Flask:
    """Build the app from the environment (or ``env``), checking every setting first."""
    from app import (
        auth,
        cli,
        contact_list,
        contact_pages,
        errors,
        extensions,
        logs,
        openapi,
        ops,
        principals,
        proxies,
        rate_limits,
        security,
        uploads,
    )
    from app.dashboard import routes as dashboard
    from app.imports import bp as imports_bp
    from app.webhooks import routes as webhooks

    settings = load_settings(env)
    app = Flask(
        __name__,
        instance_path=str(settings.instance_dir),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.from_mapping(settings.as_flask_config())
    logs.configure()
    for warning in settings.warnings:
        logging.getLogger("app").warning(warning)

    @app.before_request
    def _request_id() -> None:
        g.request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
        logs.request_id.set(g.request_id)

    @app.after_request
    def _request_id_header(response):
        response.headers.setdefault("X-Request-ID", g.get("request_id", ""))
        return response

    extensions.init_app(app)
    errors.init_app(app)
    # Checks run in this order: body size, rate limit, then who is asking.
    security.init_app(app)
    rate_limits.init_app(app)
    auth.init_app(app)
    principals.init_app(app)
    ops.init_app(app)
    openapi.init_app(app)
    app.register_blueprint(imports_bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(uploads.bp)
    webhooks.init_app(app)
    app.register_blueprint(contact_list.bp)
    app.register_blueprint(contact_pages.bp)
    cli.init_app(app)
    logs.init_app(app)
    proxies.init_app(app)  # outermost: the address and scheme every other part sees

    return app
