"""The source of truth: the SQLite/SQLAlchemy database (engine, schema and migrations,
transactions, the writer lock, where a library lives, the query cache) and the rows written into
it."""
