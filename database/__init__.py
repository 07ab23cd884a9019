"""PostgreSQL: the users table (the source of the user-profiles topic, by CDC) and the cases of
the analysts' case management, with one schema and one way to connect."""
