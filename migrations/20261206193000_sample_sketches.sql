-- Samples in PostgreSQL (schemas::sample): merged by the speed upsert and by readers. A sample
-- is the jsonb of SampleSketch::to_json: {"k": K, "records": [{"h": hash, "p": partition,
-- "o": offset, "f": fields}, ...]}, lowest (h, p, o) first. A union keeps the K lowest records
-- of both, each position once: what SampleSketch::merge keeps.

CREATE FUNCTION serving.sample_union(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    kept jsonb;
BEGIN
    IF (a -> 'k') IS DISTINCT FROM (b -> 'k') OR jsonb_typeof(a -> 'k') IS DISTINCT FROM 'number' THEN
        RAISE EXCEPTION 'samples of different sizes cannot be merged: % and %', a -> 'k', b -> 'k';
    END IF;
    SELECT coalesce(jsonb_agg(r ORDER BY h, p, o), '[]')
    INTO kept
    FROM (
        SELECT r, h, p, o
        FROM (
            SELECT DISTINCT ON (p, o) r, h, p, o
            FROM (
                SELECT r, (r ->> 'h')::bigint AS h, (r ->> 'p')::integer AS p, (r ->> 'o')::bigint AS o,
                       side
                FROM (SELECT r, 1 AS side FROM jsonb_array_elements(a -> 'records') AS r
                      UNION ALL
                      SELECT r, 2 FROM jsonb_array_elements(b -> 'records') AS r) AS both_sides
            ) AS ranked
            ORDER BY p, o, side
        ) AS once
        ORDER BY h, p, o
        LIMIT (a ->> 'k')::integer
    ) AS lowest;
    RETURN jsonb_build_object('k', a -> 'k', 'records', kept);
END
$$;

-- The union of any number of samples (NULLs skipped; NULL when there are none).
CREATE AGGREGATE serving.sample_union_agg(jsonb) (
    SFUNC = serving.sample_union,
    STYPE = jsonb,
    PARALLEL = SAFE
);
