"""Alembic environment: the app's models and database URL."""

from alembic import context

from app.extensions import db


def _app():
    app = context.config.attributes.get("flask_app")
    if app is None:
        from app import create_app

        app = create_app()
    return app


def run_migrations() -> None:
    """Run migrations on the app's engine, in one transaction."""
    app = _app()
    with app.app_context(), db.engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=db.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations()
