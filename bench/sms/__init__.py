"""SMS outbox benchmark: python -m bench.sms."""
