"""Who may call DataFlow: API tokens for clients, users who sign in for the pages, CSRF for sessions.

Authentication is on once ``API_TOKENS`` is set or a user exists. Then every request needs either
``Authorization: Bearer <token>`` (never combined with the session cookie, and needing no CSRF
token) or a signed-in session, whose unsafe requests (POST, PATCH, PUT, DELETE) must carry the
session's CSRF token in the ``X-CSRFToken`` header or the form's ``csrf_token`` field.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import sys
import time
from urllib.parse import urlsplit

import click
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.cli import with_appcontext
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError, same_origin, validate_csrf
from sqlalchemy import exists, select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired
from wtforms.validators import ValidationError as FormValidationError

from app import principals
from app.errors import error_response, wants_json
from app.extensions import csrf, db, settings
from app.models import User
from app.principals import grant_of

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)

# Endpoints anyone may reach without a check, even with the database down.
OPEN_ENDPOINTS = frozenset({"ops.health", "static", "openapi.serve_document"})
# Endpoints anyone may reach, that still know a signed-in user.
PUBLIC_ENDPOINTS = frozenset({"auth.login"})
METRICS_ENDPOINT = "metrics"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CSRF_HEADERS = ("X-CSRFToken", "X-CSRF-Token")
# Endpoints whose urlencoded body is a file, not a form: reading it for a token would consume it.
RAW_BODY_ENDPOINTS = frozenset({"imports.post_import", "imports.post_preview"})
MIN_PASSWORD_LENGTH = 10
# Checked against when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("dataflow-no-such-user")
REALM = 'Bearer realm="DataFlow"'


class LoginForm(FlaskForm):
    """Email and password."""

    email = EmailField("Email", validators=[DataRequired("Enter your email.")])
    password = PasswordField("Password", validators=[DataRequired("Enter your password.")])


def hash_password(password: str) -> str:
    """A salted, slow hash of a password (werkzeug's scrypt)."""
    return generate_password_hash(password)


def _fingerprint(user: User) -> str:
    """Ties a session to the password it was opened with: a new password ends old sessions."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:32]


def token_is_valid(token: str, tokens: tuple[str, ...]) -> bool:
    """Compare against every configured token in constant time, never stopping at a match."""
    matched = False
    for candidate in tokens:
        matched |= hmac.compare_digest(token.encode(), candidate.encode())
    return matched


def bearer_token() -> str | None:
    """The token of an ``Authorization: Bearer`` header, ``""`` for any other Authorization."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def users_exist(app: Flask | None = None) -> bool:
    """Whether any user has been created; once true it stays true for this process."""
    state = (app or current_app).extensions["dataflow"]
    if not state.get("users_exist"):
        state["users_exist"] = bool(db.session.scalar(select(exists().where(User.id.is_not(None)))))
    return state["users_exist"]


def auth_enabled() -> bool:
    """Authentication is on once API_TOKENS is set or a user exists."""
    return bool(settings().security.api_tokens) or users_exist()


def current_user() -> User | None:
    """The user of this request's session, if it has one (never for a bearer-token request)."""
    return g.get("user")


def request_identity() -> str | None:
    """Who is calling, for rate limits: a token's digest or a user id; None when anonymous."""
    token = bearer_token()
    if token:
        if token_is_valid(token, settings().security.api_tokens):
            return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]
        return None
    user_id = session.get("user_id") if "Authorization" not in request.headers else None
    return f"user:{user_id}" if user_id else None


# A session's last-seen time is rewritten at most this often, so most answers set no new cookie.
SEEN_EVERY = 60


def _session_user() -> User | None:
    """The user of a live session: same password, same generation, and not idle past SESSION_LIFETIME."""
    user_id = session.get("user_id")
    if user_id is None:
        return None
    user = db.session.get(User, user_id)
    now = int(time.time())
    seen = session.get("seen")
    if (
        user is None
        or not hmac.compare_digest(session.get("user_key", ""), _fingerprint(user))
        or session.get("generation") != user.session_generation
        or not isinstance(seen, int)
        or now - seen > settings().security.session_lifetime
    ):
        session.clear()
        return None
    if now - seen >= SEEN_EVERY:
        session["seen"] = now
    return user


def end_sessions(user: User) -> None:
    """End every session of the user, on every device: each one carries the generation it began in."""
    user.session_generation = (user.session_generation or 0) + 1


def _unauthorized(message: str, challenge: str = REALM) -> Response:
    response = error_response(401, message)
    response.headers["WWW-Authenticate"] = challenge
    return response


def _csrf_token_sent() -> str | None:
    for header in CSRF_HEADERS:
        if request.headers.get(header):
            return request.headers[header]
    form_body = request.mimetype == "multipart/form-data" or (
        request.mimetype == "application/x-www-form-urlencoded" and request.endpoint not in RAW_BODY_ENDPOINTS
    )
    return request.form.get("csrf_token") if form_body else None


def _check_csrf() -> None:
    """A session's unsafe request must carry the session's CSRF token, whatever its route."""
    if not current_app.config["WTF_CSRF_ENABLED"]:  # switched off only by tests of other things
        return
    try:
        validate_csrf(_csrf_token_sent())
    except FormValidationError as exc:
        raise CSRFError(f"{exc.args[0]} Reload the page and try again.") from None
    if request.is_secure and not same_origin(request.referrer or "", f"https://{request.host}/"):
        raise CSRFError("The request did not come from this site's pages (its Referer does not match).")
    g.csrf_valid = True  # Flask-WTF's forms skip their own check once the request passed it


def _check_metrics() -> Response | None:
    expected = settings().security.metrics_token
    token = bearer_token()
    if not token:
        return _unauthorized("Send Authorization: Bearer <METRICS_TOKEN> to read the metrics")
    if not token_is_valid(token, (expected,)):
        return _unauthorized("The metrics token is not valid", f'{REALM}, error="invalid_token"')
    return None


def _authenticate() -> Response | None:
    """Let the request through, or answer 401 (API) or send a browser to the login page.

    The database connection the check used goes back to the pool before the view runs: a view may
    spend minutes reading a slow client's body, and a hundred such clients must not hold the pool.
    """
    began = not db.session().in_transaction()
    try:
        return _check_request()
    finally:
        if began:  # only the transaction this check began (a caller's own stays as it was)
            db.session.rollback()


def _check_request() -> Response | None:
    g.user = None
    endpoint = request.endpoint
    if endpoint is None or endpoint in OPEN_ENDPOINTS:
        return None  # unknown paths answer 404 whoever asks
    if endpoint == METRICS_ENDPOINT and settings().security.metrics_token is not None:
        return _check_metrics()
    # Without METRICS_TOKEN, /metrics is read like any other route: open only while authentication
    # is off, else with an API token (read scope) or a session, since its labels name the routes.
    enabled = g.auth_enabled = auth_enabled()
    public = endpoint in PUBLIC_ENDPOINTS

    token = bearer_token()
    if token is not None:  # an Authorization header: the session cookie is never looked at
        grant = grant_of(token, settings().security.token_grants) if token else None
        if grant is not None:
            g.auth, g.principal = "token", principals.for_token(grant)
            return None
        if not enabled or public:
            g.auth = "token"
            return None
        return _unauthorized("The API token is not valid", f'{REALM}, error="invalid_token"')

    user = _session_user() if enabled else None
    if user is not None:
        g.user, g.auth, g.principal = user, "session", principals.for_user(user.email)
        if request.method not in SAFE_METHODS:
            _check_csrf()
        return None
    if public or not enabled:
        # No one to authenticate: the forms keep their CSRF check, exempt API routes skip it.
        if current_app.config["WTF_CSRF_ENABLED"]:
            csrf.protect(apply_exemptions=True)
        return None
    if request.method == "GET" and not wants_json():
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")), code=303)
    return _unauthorized("Authentication required: send Authorization: Bearer <token>")


def _not_stored(response: Response) -> Response:
    """Pages and JSON behind authentication are for the one who asked: no cache keeps them."""
    if g.get("auth_enabled"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _safe_next(target: str | None) -> str:
    """Only a path on this site, never another host (``//evil``, ``/\\evil``, ``https://...``).

    A target with a control character (CR, LF, tab ...) cannot be a header's value: it goes home too.
    """
    if not target or not target.isprintable():
        return url_for("imports.new")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith(("//", "/\\")):
        return url_for("imports.new")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int]:
    """Sign in with email and password."""
    form = LoginForm()
    target = _safe_next(request.args.get("next"))
    status = 200
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        user = db.session.scalar(select(User).where(User.email == email))
        if check_password_hash(user.password_hash if user else _DUMMY_HASH, form.password.data) and user:
            session.clear()  # a fresh session: nothing from before signing in carries over
            session["user_id"] = user.id
            session["user_key"] = _fingerprint(user)
            session["generation"] = user.session_generation
            session["seen"] = int(time.time())
            session.permanent = True  # the cookie lasts SESSION_LIFETIME; the server checks it too
            log.info("user signed in", extra={"user_id": user.id})
            return redirect(target, code=303)
        form.password.errors.append("The email or password is wrong.")
        status = 401
    elif form.errors:
        status = 400
    return render_template(
        "auth/login.html", form=form, next=target, auth_enabled=auth_enabled(), has_users=users_exist()
    ), status


@bp.post("/logout")
def logout() -> Response:
    """Sign out: every session of this user ends, on every device (CSRF was checked on the way in)."""
    user = current_user()
    if user is not None:
        end_sessions(user)
        db.session.commit()
        log.info("user signed out; every session of theirs ended", extra={"user_id": user.id})
    session.clear()
    flash("You are signed out.", "success")
    return redirect(url_for("auth.login"), code=303)


@click.command("create-user")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--update", is_flag=True, help="Set a new password for an existing user.")
@with_appcontext
def create_user_command(email: str, password_stdin: bool, update: bool) -> None:
    """Create a user who may sign in to the pages (or, with --update, change a password)."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise click.BadParameter("give the user's email address", param_hint="EMAIL")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.ClickException(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long")
    user = db.session.scalar(select(User).where(User.email == email))
    if user is not None and not update:
        raise click.ClickException(f"{email} already exists; use --update to set a new password")
    if user is None and update:
        raise click.ClickException(f"there is no user {email}")
    if user is None:
        db.session.add(User(email=email, password_hash=hash_password(password)))
    else:
        user.password_hash = hash_password(password)
        end_sessions(user)
    db.session.commit()
    click.echo(f"{'updated' if update else 'created'} {email}")


@click.command("revoke-sessions")
@click.argument("email")
@with_appcontext
def revoke_sessions_command(email: str) -> None:
    """End every session of a user at once (a lost laptop, a leaked cookie); they sign in again."""
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise click.ClickException(f"there is no user {email.strip().lower()}")
    end_sessions(user)
    db.session.commit()
    click.echo(f"every session of {user.email} has ended")


def _template_context() -> dict[str, object]:
    try:
        enabled = auth_enabled()
    except SQLAlchemyError:
        db.session.rollback()
        enabled = False
    return {"auth_enabled": enabled, "current_user": current_user()}


def _serves_requests() -> bool:
    """Whether this process answers HTTP: gunicorn or `flask run`, not `flask worker` or other commands."""
    command = click.get_current_context(silent=True)
    return command is None or command.info_name == "run"


def startup_warning(app: Flask) -> None:
    """Say plainly in the web server's log when anyone who reaches it may use it."""
    if app.config["SETTINGS"].security.api_tokens or not _serves_requests():
        return
    with app.app_context():
        try:
            if users_exist(app):
                return
        except SQLAlchemyError:  # not migrated yet: there are no users
            db.session.rollback()
        finally:
            db.session.remove()
    log.warning(
        "Authentication is OFF: API_TOKENS is not set and no user exists, so anyone who can reach "
        "this server can import and read contacts. Set API_TOKENS and run `flask create-user EMAIL`."
    )


def init_app(app: Flask) -> None:
    """Check every request, add the login pages and the create-user command."""
    app.register_blueprint(bp)
    app.before_request(_authenticate)
    app.after_request(_not_stored)
    app.context_processor(_template_context)
    app.cli.add_command(create_user_command)
    app.cli.add_command(revoke_sessions_command)
    startup_warning(app)
