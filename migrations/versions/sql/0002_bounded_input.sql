-- Bounded input for outbox.validate_update: size, nesting depth and 64-bit integers.
--
-- The twin of the whole-body scan in outbox_worker/validation.py (raw_rule_errors): same
-- limits (outbox_worker/limits.py), same paths, same messages. A payload past a limit is
-- refused with that one problem at '$' before any recursive rule runs: the PL/pgSQL walks
-- below recurse once per level, and a deep payload would end in SQLSTATE 54001.
-- NaN, Infinity and lone surrogates need no rule here: jsonb cannot hold them, so PostgreSQL
-- refuses them (SQLSTATE 22P02) when the text is cast to jsonb, before outbox.enqueue runs.

-- The one problem of a payload past a limit, or NULL. The size is the stored JSON text's
-- (octet_length of payload::text, what the worker sends); the depth test is a jsonpath that
-- looks no deeper than the limit, so it never recurses past it.
CREATE OR REPLACE FUNCTION outbox.limit_problem(payload jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    size integer := octet_length(payload::text);
BEGIN
    IF size > 1048576 THEN
        RETURN format('is %s bytes of JSON text; the limit is 1048576 bytes', size);
    END IF;
    -- Level 0 is the payload itself: a container at level 32 is the 33rd level of nesting.
    IF jsonb_path_exists(payload, 'strict $.**{32} ? (@.type() == "object" || @.type() == "array")') THEN
        RETURN 'nests objects and arrays more than 32 levels deep';
    END IF;
    RETURN NULL;
END
$$;

-- Paths of every integer outside the signed 64-bit range, at any depth (Ravelin decodes numbers
-- into int64 or float64). Call it only on a payload within the depth limit. A jsonpath filter
-- finds whether there is any such number first, so the common case never builds a path.
CREATE OR REPLACE FUNCTION outbox.big_integer_paths(payload jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
WITH RECURSIVE node(path, value) AS (
    SELECT '', payload
    WHERE jsonb_path_exists(payload, 'strict $.** ? (@.type() == "number" && (@ > 9223372036854775807 || @ < -9223372036854775808))')
  UNION ALL
    SELECT child.path, child.value
    FROM node AS n CROSS JOIN LATERAL (
        SELECT CASE WHEN n.path = '' THEN m.key ELSE n.path || '.' || m.key END, m.value
        FROM jsonb_each(CASE WHEN jsonb_typeof(n.value) = 'object' THEN n.value ELSE '{}' END) AS m
      UNION ALL
        SELECT n.path || '[' || (e.ordinality - 1) || ']', e.value
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(n.value) = 'array' THEN n.value ELSE '[]' END)
             WITH ORDINALITY AS e(value, ordinality)
    ) AS child(path, value)
)
SELECT coalesce(array_agg(path ORDER BY path), '{}')
FROM node
WHERE jsonb_typeof(value) = 'number'
  AND value::text ~ '^-?[0-9]+$'  -- an integer as stored: 1e19 is stored 10000000000000000000
  AND value::text::numeric NOT BETWEEN -9223372036854775808 AND 9223372036854775807
$$;

-- Every problem of a registration update as '<json path>: <message>'; empty when it is valid.
-- As in 0001, plus: a payload past a limit gets that one problem, and integers past 64 bits are
-- reported like the other whole-body rules (they win over a type problem at the same path).
CREATE OR REPLACE FUNCTION outbox.validate_update(payload jsonb) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    whole text[];     -- rules over the whole body; they win over a type problem at the same path
    seen text[];
    problems text[];
    registration jsonb := payload -> 'registration';
    too_big text[];
    limit_hit text;
BEGIN
    IF payload IS NULL OR jsonb_typeof(payload) <> 'object' THEN
        RETURN ARRAY['$: must be an object'];
    END IF;
    limit_hit := outbox.limit_problem(payload);
    IF limit_hit IS NOT NULL THEN
        RETURN ARRAY['$: ' || limit_hit];
    END IF;

    seen := outbox.plaintext_password_paths(payload);
    whole := ARRAY(SELECT p || ': plaintext password refused; send passwordHashed (use hash_password())'
                   FROM unnest(seen) AS p);
    too_big := outbox.big_integer_paths(payload);
    whole := whole || ARRAY(
        SELECT p || ': must fit in a signed 64-bit integer (-9223372036854775808 to 9223372036854775807)'
        FROM unnest(too_big) AS p
    );
    seen := seen || too_big;
    IF coalesce(payload -> 'customer', 'null') <> 'null' AND coalesce(payload -> 'supplier', 'null') <> 'null' THEN
        whole := whole || 'supplier: send customer or supplier, not both'::text;
        seen := seen || 'supplier'::text;
    END IF;

    problems := outbox.shape_problems(payload, outbox.update_shape(), '');
    IF NOT payload ? 'timestamp' THEN
        problems := problems || 'timestamp: is required'::text;
    ELSIF payload -> 'timestamp' = 'null' THEN
        problems := problems || 'timestamp: must be an integer'::text;
    END IF;
    IF registration IS NULL THEN
        problems := problems || 'registration: is required'::text;
    ELSIF registration = 'null' THEN
        problems := problems || 'registration: must be an object'::text;
    ELSIF jsonb_typeof(registration) = 'object' THEN
        IF NOT registration ? 'success' THEN
            problems := problems || 'registration.success: is required'::text;
        ELSIF registration -> 'success' = 'null' THEN
            problems := problems || 'registration.success: must be a boolean'::text;
        END IF;
    END IF;

    RETURN whole || ARRAY(
        SELECT p FROM unnest(problems) AS p
        WHERE NOT EXISTS (SELECT FROM unnest(seen) AS s WHERE left(p, length(s) + 2) = s || ': ')
    );
END
$$;
