"""Database access: the pools and the role a request takes (pool.as_caller), named queries, migrations."""
