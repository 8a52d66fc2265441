"""Who may do what: users, API keys, browser sessions, the audit log, rate limits and the home's secrets.

Layout: ``models`` (roles and the API key, users, web sessions and audit tables),
``auth`` (keys, passwords, sessions and the one role -> permission table), ``audit`` (recording who did
what), ``ratelimit`` (token buckets: SQLite, Redis, memory), ``home_secrets`` (the embedded profile's
generated signing and webhook secrets, and the refusal to listen beyond loopback while one is a placeholder).
"""
