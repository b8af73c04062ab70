-- The fleet's shared send schedule, for OUTBOX_RATE_LIMIT across every worker of a database.
--
-- One row per schedule: next_slot_at is the moment the fleet's next unreserved send slot
-- begins. A worker reserves a batch of slots in one upsert (store/delivery.py
-- RESERVE_SEND_TIME) and spends them by itself, so the hot path is one round trip per batch,
-- not per send. Only workers with a rate limit touch it.
CREATE TABLE outbox.send_schedule (
    name text PRIMARY KEY,
    next_slot_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE outbox.send_schedule IS
    'OUTBOX_RATE_LIMIT across the fleet: the start of the next unreserved send slot';

INSERT INTO outbox.send_schedule (name) VALUES ('registration');
