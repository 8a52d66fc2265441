"""``annotate-anyone keys`` and ``annotate-anyone users``: API keys and dashboard users (thin over access.auth)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from annotate_anyone.settings import Settings, get_settings

keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
users_app = typer.Typer(help="Dashboard users: create, list, disable.", no_args_is_help=True)
console = Console()
RoleOption = Annotated[str, typer.Option(help="admin | engineer | annotator | trainer")]


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Argument(help="What the key is for, e.g. 'nightly-trainer'")],
    role: RoleOption = "engineer",
    expires_days: Annotated[float | None, typer.Option(help="Days until it expires (default: never)")] = None,
) -> None:
    """Create an API key and print it (only this once)."""
    from annotate_anyone.access import audit, auth
    from annotate_anyone.db.base import session_scope

    with session_scope(get_settings().db_url) as session:
        key, raw = auth.create_api_key(session, name=name, role=role, expires_in_days=expires_days)
        audit.record(
            session,
            principal=None,
            actor="cli",
            action="key.create",
            target_type="api_key",
            target_id=key.prefix,
            detail={"role": role, "name": name},
        )
    console.print(f"key {key.prefix} ({role}) created; it is shown this once:")
    typer.echo(raw)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@keys_app.command("list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help='Machine-readable: {"keys": [...], "total": N}')] = False,
) -> None:
    """List keys (prefix, role, expiry, last use; never the keys)."""
    from annotate_anyone.access import auth
    from annotate_anyone.db.base import session_scope

    with session_scope(get_settings().db_url) as session:
        rows = [
            {
                "id": k.id,
                "name": k.name,
                "prefix": k.prefix,
                "role": k.role.value,
                "created_at": _iso(k.created_at),
                "expires_at": _iso(k.expires_at),
                "last_used_at": _iso(k.last_used_at),
                "revoked_at": _iso(k.revoked_at),
            }
            for k in auth.list_api_keys(session)
        ]
    if as_json:
        typer.echo(json.dumps({"keys": rows, "total": len(rows)}))
        return
    table = Table(title="API keys")
    for col in ("id", "name", "prefix", "role", "expires", "last used", "state"):
        table.add_column(col)
    for k in rows:
        table.add_row(
            str(k["id"]),
            k["name"],
            k["prefix"],
            k["role"],
            k["expires_at"] or "never",
            k["last_used_at"] or "-",
            "revoked" if k["revoked_at"] else "active",
        )
    console.print(table)


@keys_app.command("revoke")
def revoke_key(key_id: Annotated[int, typer.Argument(help="The key's id (see `keys list`)")]) -> None:
    """Revoke a key; it stops working on the next request."""
    from annotate_anyone.access import audit, auth
    from annotate_anyone.db.base import session_scope

    with session_scope(get_settings().db_url) as session:
        key = auth.revoke_api_key(session, key_id)
        audit.record(
            session, principal=None, actor="cli", action="key.revoke", target_type="api_key", target_id=key.prefix
        )
    console.print(f"key {key.prefix} revoked")


@users_app.command("create")
def create_user(
    username: Annotated[str, typer.Argument()],
    role: RoleOption = "engineer",
    password: Annotated[
        str | None, typer.Option(help="The password (visible to other local users: prefer --password-stdin)")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input")
    ] = False,
) -> None:
    """Create a dashboard user; the password is asked for on a terminal, else read with --password-stdin.

    Scripts: ``printf '%s\\n' "$PASSWORD" | annotate-anyone users create ada --role admin --password-stdin``.
    """
    from annotate_anyone.access import audit, auth
    from annotate_anyone.db.base import session_scope

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif password is None:
        if not sys.stdin.isatty():
            raise typer.BadParameter("no terminal to ask for the password on: pipe it in with --password-stdin")
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)

    with session_scope(get_settings().db_url) as session:
        user = auth.create_user(session, username=username, password=password, role=role)
        audit.record(
            session,
            principal=None,
            actor="cli",
            action="user.create",
            target_type="user",
            target_id=user.username,
            detail={"role": role},
        )
    console.print(f"user {username} ({role}) created")


@users_app.command("list")
def list_users(
    as_json: Annotated[bool, typer.Option("--json", help='Machine-readable: {"users": [...], "total": N}')] = False,
) -> None:
    """List dashboard users."""
    from annotate_anyone.access import auth
    from annotate_anyone.db.base import session_scope

    with session_scope(get_settings().db_url) as session:
        rows = [
            {
                "id": u.id,
                "username": u.username,
                "role": u.role.value,
                "created_at": _iso(u.created_at),
                "last_login_at": _iso(u.last_login_at),
                "disabled_at": _iso(u.disabled_at),
            }
            for u in auth.list_users(session)
        ]
    if as_json:
        typer.echo(json.dumps({"users": rows, "total": len(rows)}))
        return
    table = Table(title="users")
    for col in ("id", "username", "role", "last login", "state"):
        table.add_column(col)
    for u in rows:
        table.add_row(
            str(u["id"]),
            u["username"],
            u["role"],
            u["last_login_at"] or "-",
            "disabled" if u["disabled_at"] else "active",
        )
    console.print(table)


@users_app.command("disable")
def disable_user(user_id: Annotated[int, typer.Argument()]) -> None:
    """Disable a user and end their sessions."""
    from annotate_anyone.access import audit, auth
    from annotate_anyone.db.base import session_scope

    with session_scope(get_settings().db_url) as session:
        user = auth.disable_user(session, user_id)
        audit.record(
            session, principal=None, actor="cli", action="user.disable", target_type="user", target_id=user.username
        )
    console.print(f"user {user.username} disabled")


def print_local_admin(settings: Settings) -> None:
    """On a database without any admin (either profile), create the first admin and print its credentials once;
    afterwards, print where to log in and how to add one."""
    from annotate_anyone.access.auth import ensure_local_admin
    from annotate_anyone.db.base import session_scope

    with session_scope(settings.db_url) as session:
        created = ensure_local_admin(session)
    login = f"{settings.public_url.rstrip('/')}/login"
    if created:
        console.print("[bold]first admin created[/] (shown this once; store them now)")
        console.print(f"dashboard login: {created['username']} / {created['password']}  at {login}")
        console.print(f"admin API key:   {created['key']}  (header Authorization: Bearer <key>)")
    else:
        console.print(f"dashboard: log in at {login} with an admin account")
    console.print(
        "more users: printf '%s\\n' \"$PASSWORD\" | annotate-anyone users create NAME --role admin --password-stdin"
    )
