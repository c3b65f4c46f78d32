"""The WSGI entry point: ``gunicorn wsgi:app`` and ``flask --app wsgi``."""

import sys

from app import create_app
from app.config import ConfigError

# gunicorn's "worker failed to boot": its master stops instead of starting workers forever.
BOOT_ERROR = 3

try:
    app = create_app()
except ConfigError as exc:
    # A wrong setting is the operator's to fix: list the mistakes, without a traceback.
    print(exc, file=sys.stderr)
    raise SystemExit(BOOT_ERROR) from None
