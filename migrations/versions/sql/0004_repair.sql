-- Rows that break revision 0004's row constraints, repaired exactly as the worker would treat
-- them: a history that is not an array starts afresh (as the settle statement does), a count past
-- the bound stops at it, a pending row whose payload is not an object is dead-lettered unsent (as
-- the claim does). Rows already dead or acknowledged keep their payload: they are never sent, and
-- deleting an operator's evidence is not a migration's job.
--
-- One statement, so each repaired row satisfies all three constraints at once (they exist, NOT
-- VALID, whenever this runs after them, and check every row written). It runs before the
-- constraints are added and again just before they are validated (rows written in between); a
-- scan that finds nothing writes nothing, and it takes no lock that an enqueue or a claim waits
-- for (ROW EXCLUSIVE, and row locks only on the rows it repairs).
UPDATE outbox.messages SET
    history = CASE WHEN jsonb_typeof(history) IS DISTINCT FROM 'array' THEN '[]'::jsonb
                   ELSE history END,
    attempts = least(attempts, 1000000),
    state = CASE WHEN state = 'pending' AND jsonb_typeof(payload) <> 'object' THEN 'dead'
                 ELSE state END,
    dead_at = CASE WHEN state = 'pending' AND jsonb_typeof(payload) <> 'object' THEN now()
                   ELSE dead_at END,
    lease_token = CASE WHEN state = 'pending' AND jsonb_typeof(payload) <> 'object' THEN NULL
                       ELSE lease_token END,
    last_error = CASE WHEN state = 'pending' AND jsonb_typeof(payload) <> 'object'
                      THEN format('not sent: the stored payload is a JSON %s, not an object '
                                  '(found by migration 0003)', jsonb_typeof(payload))
                      ELSE last_error END
WHERE jsonb_typeof(history) IS DISTINCT FROM 'array'
   OR attempts > 1000000
   OR (state = 'pending' AND jsonb_typeof(payload) <> 'object')
