-- Samples in PostgreSQL (schemas::sample): merged by the speed upsert and by readers. A sample
-- is the jsonb of SampleSketch::to_json: {"k": K, "b": max_record_bytes, "records": [{"h": hash,
-- "p": partition, "o": offset, "f": fields (or null and "n": their bytes)}, ...]}, lowest
-- (h, p, o) first. A union keeps the K lowest records of both, each position once: what
-- SampleSketch::merge keeps. Samples of other settings (K 1..1000, b 64..65536, whole numbers)
-- are refused, never mixed.

CREATE FUNCTION serving.sample_union(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    kept jsonb;
BEGIN
    IF jsonb_typeof(a -> 'k') IS DISTINCT FROM 'number' OR jsonb_typeof(a -> 'b') IS DISTINCT FROM 'number'
       OR jsonb_typeof(a -> 'records') IS DISTINCT FROM 'array'
       OR jsonb_typeof(b -> 'records') IS DISTINCT FROM 'array'
       OR (a ->> 'k') !~ '^[0-9]{1,4}$' OR (a ->> 'b') !~ '^[0-9]{1,5}$'
       OR (a ->> 'k')::integer NOT BETWEEN 1 AND 1000 OR (a ->> 'b')::integer NOT BETWEEN 64 AND 65536 THEN
        RAISE EXCEPTION 'not a sample: settings k %, b %', a -> 'k', a -> 'b';
    END IF;
    IF (a -> 'k') IS DISTINCT FROM (b -> 'k') OR (a -> 'b') IS DISTINCT FROM (b -> 'b') THEN
        RAISE EXCEPTION 'samples of different settings cannot be merged: k % and %, b % and %',
            a -> 'k', b -> 'k', a -> 'b', b -> 'b';
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
    RETURN jsonb_build_object('k', a -> 'k', 'b', a -> 'b', 'records', kept);
END
$$;

-- The union of any number of samples (NULLs skipped; NULL when there are none).
CREATE AGGREGATE serving.sample_union_agg(jsonb) (
    SFUNC = serving.sample_union,
    STYPE = jsonb,
    PARALLEL = SAFE
);
