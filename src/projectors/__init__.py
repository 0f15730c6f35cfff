"""The relay (event store to Kafka) and the read-model projector (Kafka to MongoDB)."""
