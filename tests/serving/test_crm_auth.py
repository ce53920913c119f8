"""The CRM console's sign-in on a real `patronage serve` (uvicorn on 127.0.0.1, the session's
trained sample store): no cookie -> sign-in page; storefront and admin keys refused; the
cookie's attributes; tampered and expired cookies refused; posts without the CSRF token
refused; the key never in a URL, a page or the log."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from http.cookies import SimpleCookie

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from serving.config import Settings
from serving.crm.session import SESSION_COOKIE, SESSION_SALT, SIGNER_KWARGS, signing_secret
from tests.conftest import TrainedSampleStore
from tests.serving.console_server import API_KEYS, KEYS, ConsoleServer, running_console

PAGES = (
    "/crm/",
    "/crm/customers",
    "/crm/customers?view=at_risk",
    "/crm/customers.csv",
    "/crm/models",
    "/crm/charts/segments.svg",
)


@pytest.fixture(scope="module")
def console(
    trained_sample_store: TrainedSampleStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleServer]:
    with running_console(trained_sample_store, tmp_path_factory.mktemp("crm_auth")) as server:
        yield server


def _client(console: ConsoleServer) -> httpx.Client:
    return httpx.Client(base_url=console.url, timeout=30, follow_redirects=False)


def _form_token(client: httpx.Client) -> str:
    page = client.get("/crm/login")
    assert page.status_code == 200
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def _sign_in(client: httpx.Client, key: str, **headers: str) -> httpx.Response:
    token = _form_token(client)
    return client.post(
        "/crm/login", data={"csrf_token": token, "api_key": key, "next": "/crm/"}, headers=headers
    )


def _set_cookie(answer: httpx.Response, name: str) -> str:
    """The Set-Cookie header of `name` (fails when absent)."""
    for header in answer.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return header
    raise AssertionError(f"no {name} cookie set; headers: {answer.headers}")


def test_pages_without_a_cookie_send_the_browser_to_sign_in(console: ConsoleServer) -> None:
    with _client(console) as client:
        for path in PAGES:
            answer = client.get(path)
            assert answer.status_code == 303, (path, answer.status_code)
            assert answer.headers["location"].startswith("/crm/login"), path
        # the page asked for is kept (as a path of this site) for after the sign-in
        assert client.get("/crm/models").headers["location"] == "/crm/login?next=%2Fcrm%2Fmodels"


@pytest.mark.parametrize("scope", ["storefront", "admin"])
def test_a_key_of_another_scope_is_refused(console: ConsoleServer, scope: str) -> None:
    with _client(console) as client:
        answer = _sign_in(client, KEYS[scope])
        assert answer.status_code == 401
        assert "needs a crm key" in answer.text
        assert KEYS[scope] not in answer.text
        assert not any(h.startswith(SESSION_COOKIE) for h in answer.headers.get_list("set-cookie"))
        assert client.get("/crm/").status_code == 303


def test_an_unknown_key_is_refused(console: ConsoleServer) -> None:
    with _client(console) as client:
        answer = _sign_in(client, "not-a-key")
        assert answer.status_code == 401 and "not valid" in answer.text
        assert client.get("/crm/").status_code == 303


def test_the_crm_key_signs_in_with_a_strict_http_only_cookie(console: ConsoleServer) -> None:
    with _client(console) as client:
        answer = _sign_in(client, KEYS["crm"])
        assert answer.status_code == 303 and answer.headers["location"] == "/crm/"
        cookie = _set_cookie(answer, SESSION_COOKIE)
        attributes = {part.strip().lower() for part in cookie.split(";")}
        assert {"httponly", "samesite=strict", "path=/crm", "max-age=28800"} <= attributes
        assert "secure" not in attributes  # plain http here
        assert KEYS["crm"] not in cookie
        for path in PAGES:
            page = client.get(path)
            assert page.status_code == 200, (path, page.text[:300])
            assert KEYS["crm"] not in page.text
        assert "default-src 'none'" in client.get("/crm/").headers["content-security-policy"]


def test_the_cookie_is_secure_behind_https(console: ConsoleServer) -> None:
    """uvicorn trusts `X-Forwarded-Proto` from 127.0.0.1 (a proxy on the same host)."""
    with _client(console) as client:
        answer = _sign_in(client, KEYS["crm"], **{"X-Forwarded-Proto": "https"})
        assert answer.status_code == 303
        assert "secure" in {
            p.strip().lower() for p in _set_cookie(answer, SESSION_COOKIE).split(";")
        }


def _session_value(console: ConsoleServer) -> str:
    with _client(console) as client:
        answer = _sign_in(client, KEYS["crm"])
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(_set_cookie(answer, SESSION_COOKIE))
        return parsed[SESSION_COOKIE].value


def test_a_tampered_cookie_is_refused(console: ConsoleServer) -> None:
    value = _session_value(console)
    payload, _, signature = value.rpartition(".")
    # a character inside the signature (the last one's low bits are base64 padding)
    flipped = signature[:5] + ("A" if signature[5] != "A" else "B") + signature[6:]
    with _client(console) as client:
        client.cookies.set(SESSION_COOKIE, value, path="/crm")
        assert client.get("/crm/").status_code == 200  # the genuine cookie works
        for forged in (f"{payload}.{flipped}", "x" + value[1:], value + "x"):
            client.cookies.clear()
            client.cookies.set(SESSION_COOKIE, forged, path="/crm")
            answer = client.get("/crm/")
            assert answer.status_code == 303, forged
            assert answer.headers["location"].startswith("/crm/login")


def _forged(seconds_ago: int, key: str = KEYS["crm"]) -> str:
    """A session cookie signed with the server's secret, dated `seconds_ago` seconds ago."""
    from serving.auth import KeyRing
    from serving.crm.session import ConsoleSessions

    class BackDated(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - seconds_ago

    settings = Settings(api_keys=API_KEYS)
    sessions = ConsoleSessions(settings, KeyRing.from_pairs(settings.keys_by_scope(), False))
    serializer = URLSafeTimedSerializer(
        signing_secret(settings), salt=SESSION_SALT, signer=BackDated, signer_kwargs=SIGNER_KWARGS
    )
    return serializer.dumps({"k": sessions.fingerprint(key), "c": "token"})


def test_an_expired_cookie_is_refused(console: ConsoleServer) -> None:
    with _client(console) as client:
        client.cookies.set(SESSION_COOKIE, _forged(60), path="/crm")
        assert client.get("/crm/").status_code == 200  # a fresh one signed the same way works
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, _forged(8 * 3600 + 60), path="/crm")
        answer = client.get("/crm/")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/crm/login")
        # and the browser is told to drop it
        assert "max-age=0" in _set_cookie(answer, SESSION_COOKIE).lower()


def test_a_cookie_of_a_storefront_key_is_refused(console: ConsoleServer) -> None:
    """Even correctly signed, a session naming a key that is not a crm key does not pass."""
    with _client(console) as client:
        client.cookies.set(SESSION_COOKIE, _forged(60, KEYS["storefront"]), path="/crm")
        assert client.get("/crm/").status_code == 303


def test_sign_in_without_the_csrf_token_is_refused(console: ConsoleServer) -> None:
    with _client(console) as client:
        _form_token(client)  # the pre-sign-in cookie is there; the form field is not
        answer = client.post("/crm/login", data={"api_key": KEYS["crm"]})
        assert answer.status_code == 403
        wrong = client.post("/crm/login", data={"api_key": KEYS["crm"], "csrf_token": "guess"})
        assert wrong.status_code == 403
        assert not client.cookies.get(SESSION_COOKIE)
        assert client.get("/crm/").status_code == 303
    with _client(console) as shown, _client(console) as other:
        token = _form_token(shown)  # a token posted without the cookie it belongs to
        answer = other.post("/crm/login", data={"api_key": KEYS["crm"], "csrf_token": token})
        assert answer.status_code == 403


def test_sign_out_needs_the_csrf_token(console: ConsoleServer) -> None:
    with _client(console) as client:
        assert _sign_in(client, KEYS["crm"]).status_code == 303
        page = client.get("/crm/")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, "the sign-out form carries the session's CSRF token"
        assert client.post("/crm/logout", data={}).status_code == 403
        assert client.post("/crm/logout", data={"csrf_token": "nope"}).status_code == 403
        assert client.get("/crm/").status_code == 200  # still signed in
        answer = client.post("/crm/logout", data={"csrf_token": token.group(1)})
        assert answer.status_code == 303 and answer.headers["location"] == "/crm/login"
        assert client.get("/crm/").status_code == 303


def test_next_never_leaves_the_console(console: ConsoleServer) -> None:
    with _client(console) as client:
        for target in ("https://elsewhere.example/", "//elsewhere.example", "/v1/models"):
            token = _form_token(client)
            answer = client.post(
                "/crm/login", data={"csrf_token": token, "api_key": KEYS["crm"], "next": target}
            )
            assert answer.headers["location"] == "/crm/", target
        token = _form_token(client)
        answer = client.post(
            "/crm/login",
            data={"csrf_token": token, "api_key": KEYS["crm"], "next": "/crm/models"},
        )
        assert answer.headers["location"] == "/crm/models"


def test_the_key_is_in_no_url_page_or_log_line(console: ConsoleServer) -> None:
    with _client(console) as client:
        form = client.get("/crm/login")
        assert 'method="post"' in form.text and 'type="password"' in form.text
        answer = _sign_in(client, KEYS["crm"])
        assert KEYS["crm"] not in answer.headers["location"]
        assert KEYS["crm"] not in client.get("/crm/").text
    log = console.log()
    assert "POST /crm/login" in log  # the access log is on: the requests are there
    for key in KEYS.values():
        assert key not in log
