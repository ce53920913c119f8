"""The CRM console's sign-in: a crm key entered once, then a signed, expiring session cookie.

The key is checked by the app's `KeyRing` (constant time) and never stored: the cookie holds
only a fingerprint of it (an HMAC under the signing secret, so a cookie cannot be turned back
into the key) and the session's CSRF token, signed and timestamped by itsdangerous. A cookie
is refused when its signature does not verify, when it is older than
`Settings.crm_session_minutes`, or when its key is no longer configured (removing a key ends
its sessions). Cookies are HttpOnly, SameSite=Strict, limited to `/crm`, and Secure when the
request came over HTTPS (uvicorn honours `X-Forwarded-Proto` from a trusted proxy).

CSRF: every POST form carries the session's token (`csrf_token`); the sign-in form, posted
before there is a session, carries a token that must equal the one in a short-lived signed
pre-sign-in cookie (double submit).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request, Response
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from serving.auth import KeyRing
from serving.config import Settings

SESSION_COOKIE = "patronage_crm_session"
SIGN_IN_COOKIE = "patronage_crm_sign_in"
COOKIE_PATH = "/crm"
CSRF_FIELD = "csrf_token"
SIGN_IN_MINUTES = 60.0
"""How long a sign-in form stays usable after it was shown (minutes)."""
CONSOLE_SCOPE = "crm"

SESSION_SALT = "patronage.crm.session"
SIGNER_KWARGS = {"digest_method": hashlib.sha256}
"""itsdangerous signs with HMAC-SHA1 by default; the console asks for SHA-256."""
_SIGN_IN_SALT = "patronage.crm.sign-in"


class SignInRequired(Exception):
    """No valid session: the page answers with a redirect to the sign-in page."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CsrfRejected(Exception):
    """A form was posted without the token of its page (answered 403)."""


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in marketer: which key (by fingerprint) and the CSRF token of their forms."""

    key_fingerprint: str
    csrf_token: str


def signing_secret(settings: Settings) -> bytes:
    """The secret that signs console cookies: `crm_session_secret` when set, else derived from
    the configured crm keys (the same in every worker process; new keys, new secret). Without
    any crm key (open development mode) a random secret for this process."""
    if settings.crm_session_secret:
        return settings.crm_session_secret.encode()
    crm_keys = sorted(key for scope, key in settings.keys_by_scope() if scope == CONSOLE_SCOPE)
    if not crm_keys:
        return secrets.token_bytes(32)
    material = "\n".join(crm_keys).encode()
    return hmac.new(b"patronage-crm-console-v1", material, hashlib.sha256).digest()


class ConsoleSessions:
    """Issues and checks the console's cookies for one app."""

    def __init__(self, settings: Settings, keys: KeyRing) -> None:
        self.keys = keys
        self.max_age_seconds = int(settings.crm_session_minutes * 60)
        secret = signing_secret(settings)
        self._secret = secret
        self._sessions = URLSafeTimedSerializer(
            secret, salt=SESSION_SALT, signer_kwargs=SIGNER_KWARGS
        )
        self._sign_ins = URLSafeTimedSerializer(
            secret, salt=_SIGN_IN_SALT, signer_kwargs=SIGNER_KWARGS
        )

    def fingerprint(self, key: str) -> str:
        """A one-way tag of a key under the signing secret (hex, 32 characters)."""
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()[:32]

    def _known_fingerprints(self) -> set[str]:
        if self.keys.open_access:
            return {self.fingerprint("")}
        return {self.fingerprint(k.decode()) for s, k in self.keys.entries if s == CONSOLE_SCOPE}

    def check_key(self, presented: str) -> str | None:
        """None when `presented` may sign in (a crm key; any text in open development mode),
        else the sentence saying why not (a storefront or admin key is refused)."""
        if self.keys.open_access:
            return None
        if not presented:
            return "Enter your crm key."
        granted = self.keys.scopes_of(presented)
        if not granted:
            return "This key is not valid."
        if CONSOLE_SCOPE not in granted:
            return f"This is a {', '.join(sorted(granted))} key; the console needs a crm key."
        return None

    def sign_in(self, response: Response, request: Request, key: str) -> None:
        """Set the session cookie for `key` (already checked) and drop the sign-in cookie."""
        fingerprint = self.fingerprint("" if self.keys.open_access else key)
        token = self._sessions.dumps({"k": fingerprint, "c": secrets.token_urlsafe(24)})
        _set_cookie(response, request, SESSION_COOKIE, token, self.max_age_seconds)
        response.delete_cookie(SIGN_IN_COOKIE, path=COOKIE_PATH)

    def sign_out(self, response: Response) -> None:
        """Clear the session cookie."""
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")

    def session(self, request: Request) -> ConsoleSession:
        """The request's session; raises `SignInRequired` (with why) when there is none, it was
        tampered with, it expired, or its key is no longer configured."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise SignInRequired("Please sign in.")
        try:
            payload = self._sessions.loads(cookie, max_age=self.max_age_seconds)
        except SignatureExpired:
            raise SignInRequired("Your session has expired; please sign in again.") from None
        except BadSignature:
            raise SignInRequired("Please sign in.") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("c"), str):
            raise SignInRequired("Please sign in.")
        fingerprint = payload.get("k")
        if fingerprint not in self._known_fingerprints():
            raise SignInRequired("Your key is no longer valid; please sign in with a crm key.")
        return ConsoleSession(key_fingerprint=str(fingerprint), csrf_token=payload["c"])

    @staticmethod
    def new_form_token() -> str:
        """A fresh random token for a sign-in form."""
        return secrets.token_urlsafe(24)

    def set_sign_in_cookie(self, request: Request, response: Response, token: str) -> None:
        """Set the pre-sign-in cookie holding `token` (signed), for `check_sign_in_form`."""
        signed = self._sign_ins.dumps(token)
        _set_cookie(response, request, SIGN_IN_COOKIE, signed, int(SIGN_IN_MINUTES * 60))

    def check_sign_in_form(self, request: Request, posted_token: str) -> None:
        """Raise `CsrfRejected` unless `posted_token` equals the pre-sign-in cookie's token."""
        cookie = request.cookies.get(SIGN_IN_COOKIE, "")
        try:
            expected = self._sign_ins.loads(cookie, max_age=int(SIGN_IN_MINUTES * 60))
        except BadSignature:
            raise CsrfRejected("the sign-in form expired or was not shown by this site") from None
        if not (
            isinstance(expected, str)
            and posted_token
            and hmac.compare_digest(expected.encode(), posted_token.encode())
        ):
            raise CsrfRejected("the sign-in form's token is missing or wrong")


def check_csrf(session: ConsoleSession, posted_token: str) -> None:
    """Raise `CsrfRejected` unless a posted form carries its session's token."""
    if not posted_token or not hmac.compare_digest(
        session.csrf_token.encode(), posted_token.encode()
    ):
        raise CsrfRejected("the form's token is missing or wrong")


def _set_cookie(response: Response, request: Request, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
