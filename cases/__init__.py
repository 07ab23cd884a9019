"""Case management: fraud alerts become cases in PostgreSQL, analysts decide them on a web page,
and every decision becomes a fraud label on Kafka (docs/database.md)."""
