-- Undo revision 0009: the overloads with a trace context, and the column (the two-argument
-- functions were never changed).

DROP FUNCTION outbox.enqueue(jsonb, text, jsonb);
DROP FUNCTION outbox.insert_message(jsonb, text, jsonb);
