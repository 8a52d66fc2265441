"""The embedded home: its first start (database, store, secrets, first admin) and the demo."""
