"""Operator accounts, sessions, audit and the sign-in limiter (SQLite and PostgreSQL); `gateway operators`."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from gateway.cli import main
from gateway.console.accounts import ADMIN, READ_ONLY, AccountError, Accounts, LoginLimiter
from gateway.console.labels import label, pick_language
from gateway.store import queries
from gateway.store.db import Store, utcnow
from gateway.store.models import OperatorRow, OperatorSessionRow

PASSWORD = "a long enough secret"
FAST = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)  # argon2id still; cheap for tests


@pytest.fixture
def store(store_url: str) -> Store:
    s = Store(store_url)
    s.migrate()
    return s


def test_accounts_hash_passwords_and_check_them(store: Store) -> None:
    accounts = Accounts(store, FAST)
    assert accounts.add("alice", PASSWORD).role == ADMIN
    assert accounts.add("rory", PASSWORD, READ_ONLY).can_act is False
    with store.reader() as conn:
        stored = conn.execute(select(OperatorRow.password_hash).where(OperatorRow.name == "alice")).scalar()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert accounts.verify("alice", PASSWORD) is not None
    assert accounts.verify("alice", PASSWORD + "x") is None
    assert accounts.verify("nobody", PASSWORD) is None
    for bad in (
        ("alice", PASSWORD, ADMIN),
        ("bob", "short", ADMIN),
        ("bob", PASSWORD, "root"),
        ("../x", PASSWORD, ADMIN),
    ):
        with pytest.raises(AccountError):
            accounts.add(*bad)
    assert [row["name"] for row in accounts.list()] == ["alice", "rory"]


def test_sessions_expire_end_with_a_new_password_or_a_disabled_account(store: Store) -> None:
    accounts = Accounts(store, FAST)
    alice = accounts.add("alice", PASSWORD)
    session = accounts.open_session(alice, hours=1)
    found = accounts.session(session.token)
    assert found is not None and found.operator == alice and found.csrf_token == session.csrf_token
    with store.reader() as conn:  # the store keeps a hash of the cookie, never the cookie
        kept = conn.execute(select(OperatorSessionRow.token_sha256)).scalars().all()
    assert session.token not in kept and len(kept) == 1
    assert accounts.session(session.token, now=utcnow() + timedelta(hours=2)) is None  # expired
    assert accounts.session("forged") is None and accounts.session(None) is None
    accounts.add("alice", PASSWORD + "2", replace=True)
    assert accounts.session(session.token) is None  # a new password ends the old sessions
    second = accounts.open_session(alice, hours=1)
    assert accounts.disable("alice") and accounts.session(second.token) is None
    assert accounts.verify("alice", PASSWORD + "2") is None  # disabled
    third = accounts.add("rory", PASSWORD)
    s3 = accounts.open_session(third, hours=1)
    accounts.close_session(s3.token)
    assert accounts.session(s3.token) is None


def test_audit_rows_and_log_lines(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    accounts = Accounts(store)
    accounts.audit("alice", "replay", "F1", "ok", None, "127.0.0.1")
    accounts.audit(None, "replay", "F2", "refused", "not signed in", "10.0.0.9")
    rows = queries.operator_audit(store)
    assert [(r["operator"], r["target"], r["outcome"]) for r in rows] == [
        (None, "F2", "refused"),
        ("alice", "F1", "ok"),
    ]
    err = capsys.readouterr()
    assert (err.out + err.err).count("console action") == 2


def test_login_limiter_counts_failures_per_key_in_a_window() -> None:
    now = [0.0]
    limiter = LoginLimiter(3, 60, clock=lambda: now[0])
    for _ in range(3):
        assert not limiter.blocked("client:a", "name:x")
        limiter.failed("client:a", "name:x")
    assert limiter.blocked("client:a") and limiter.blocked("name:x") and not limiter.blocked("client:b")
    now[0] = 61.0
    assert not limiter.blocked("client:a", "name:x")  # the window passed
    limiter.failed("name:x")
    limiter.succeeded("name:x")
    assert not limiter.blocked("name:x")


def test_labels_in_both_languages() -> None:
    assert (
        label("state", "ACKNOWLEDGED", "fr") == "Acquitté"
        and label("state", "ACKNOWLEDGED") == "Acknowledged"
    )
    assert label("lifecycle", "213", "fr") == "Rejetée" and label("reason", "DEST_INC") == "Unknown recipient"
    assert label("reason", "SOMETHING_NEW", "fr") == "SOMETHING_NEW" and label("state", None) == ""
    assert pick_language(None, None, "fr-FR,fr;q=0.9,en;q=0.8") == "fr"
    assert pick_language("en", "fr", "fr") == "en" and pick_language(None, "fr", "en") == "fr"
    assert pick_language("de", None, "de-DE") == "en"


def test_operators_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "gateway.toml").write_text("[sftp]\nenabled = false\n")

    def gateway(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))  # not a terminal: the first line is the password
        code = main(["operators", *args, "--data-dir", str(data)])
        out = capsys.readouterr()
        return code, out.out, out.err

    assert gateway("add", "alice", stdin=PASSWORD + "\n")[0] != 0  # no schema yet: commands only check it
    assert main(["db", "upgrade", "--data-dir", str(data)]) == 0
    capsys.readouterr()
    code, out, _ = gateway("add", "alice", stdin=PASSWORD + "\n")
    assert code == 0 and "operator alice (admin) added" in out
    assert gateway("add", "rory", "--role", "read-only", stdin=PASSWORD + "\n")[0] == 0
    code, _, err = gateway("add", "alice", stdin=PASSWORD + "\n")
    assert code == 1 and "exists" in err
    code, _, err = gateway("add", "bob", stdin="short\n")
    assert code == 1 and "at least" in err
    listing = gateway("list")[1].splitlines()
    assert listing[1].split()[:3] == ["alice", "admin", "yes"] and listing[2].split()[:3] == [
        "rory",
        "read-only",
        "yes",
    ]
    assert gateway("disable", "rory")[0] == 0
    assert gateway("list")[1].splitlines()[2].split()[:3] == ["rory", "read-only", "no"]
    assert gateway("disable", "nobody")[0] == 1
    store = Store(f"sqlite:///{data / 'gateway.db'}")
    assert Accounts(store).verify("alice", PASSWORD) is not None
    assert [a["action"] for a in queries.operator_audit(store)] == [
        "operator-disable",
        "operator-add",
        "operator-add",
    ]
    store.close()
