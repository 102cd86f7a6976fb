"""The three servers under test, all over the same SQLite schema and the same `Item` model."""
