"""The embedded home: its first start (directories, database schema, object store, generated secrets) and the demo."""
