-- Quantile sketches in PostgreSQL (schemas::quantile): merged by the speed upsert and by
-- readers, answered for BI tools. A sketch is the canonical bigint[] of
-- QuantileSketch::to_array: [format 1, precision, max_buckets, zeros, positive buckets,
-- negative buckets], then (index, count) pairs of the positive store by ascending index, then
-- those of the negative store. These functions compute what the Rust code computes, with the
-- same arithmetic, so that a union here equals a merge there element for element.

-- The union of two sketches of the same settings: counts added per (sign, index), then each
-- store folded into its window of max_buckets indices ending at its largest.
CREATE FUNCTION serving.quantile_union(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    merged bigint[];
    positives bigint;
    negatives bigint;
BEGIN
    IF a[1] IS DISTINCT FROM 1 OR b[1] IS DISTINCT FROM 1 OR a[2] IS DISTINCT FROM b[2]
       OR a[3] IS DISTINCT FROM b[3] THEN
        RAISE EXCEPTION 'quantile sketches of different settings cannot be merged: % and %',
            a[1:3], b[1:3];
    END IF;
    WITH pairs AS (
        SELECT CASE WHEN i <= s[5] THEN 1 ELSE -1 END AS sign, s[5 + 2 * i] AS idx,
               s[6 + 2 * i]::numeric AS n
        FROM (VALUES (a), (b)) AS sketches(s), generate_series(1, s[5] + s[6]) AS i
    ), summed AS (
        SELECT sign, idx, sum(n) AS n FROM pairs GROUP BY sign, idx
    ), windowed AS (
        SELECT sign, greatest(idx, max(idx) OVER (PARTITION BY sign) - a[3] + 1) AS idx, n
        FROM summed
    ), folded AS (
        SELECT sign, idx, least(sum(n), 9223372036854775807)::bigint AS n
        FROM windowed GROUP BY sign, idx
    )
    SELECT coalesce(array_agg(v ORDER BY sign DESC, idx, k), '{}'),
           count(*) FILTER (WHERE sign = 1 AND k = 1), count(*) FILTER (WHERE sign = -1 AND k = 1)
    INTO merged, positives, negatives
    FROM folded, LATERAL (VALUES (1, folded.idx), (2, folded.n)) AS pair(k, v);
    RETURN ARRAY[1, a[2], a[3], least(a[4]::numeric + b[4], 9223372036854775807)::bigint,
                 positives, negatives] || merged;
END
$$;

-- The union of any number of sketches (NULLs skipped; NULL when there are none).
CREATE AGGREGATE serving.quantile_union_agg(bigint[]) (
    SFUNC = serving.quantile_union,
    STYPE = bigint[],
    PARALLEL = SAFE
);

-- The value bucket `idx` stands for: 2·lo·hi/(lo + hi) of its bounds 2^(idx/m) and
-- 2^((idx+1)/m), m = 2^log2_buckets (the sketch's precision), built as
-- schemas::quantile::Mapping builds them (square roots of 2, multiplied in ascending bit
-- order, then scaled by an exact power of two).
CREATE FUNCTION serving.quantile_bucket_value(log2_buckets integer, idx bigint)
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    m bigint := 1::bigint << log2_buckets;
    within bigint := idx - floor(idx::numeric / m)::bigint * m;
    exponent bigint := floor(idx::numeric / m)::bigint;
    roots double precision[];
    lo double precision := 1.0;
    hi double precision := 1.0;
    representative double precision;
    step bigint;
BEGIN
    roots := array_fill(2.0::double precision, ARRAY[log2_buckets + 1], ARRAY[0]);
    FOR i IN REVERSE log2_buckets - 1 .. 0 LOOP
        roots[i] := sqrt(roots[i + 1]);
    END LOOP;
    FOR bit IN 0 .. log2_buckets LOOP
        IF within & (1::bigint << bit) <> 0 THEN
            lo := lo * roots[bit];
        END IF;
        IF (within + 1) & (1::bigint << bit) <> 0 THEN
            hi := hi * roots[bit];
        END IF;
    END LOOP;
    representative := 2.0 * lo * hi / (lo + hi);
    -- Exact scaling by powers of two of at most 2^±1000 at a time, as the Rust code does.
    WHILE exponent <> 0 LOOP
        step := greatest(-1000, least(1000, exponent));
        representative := representative * power(2.0::double precision, step::double precision);
        exponent := exponent - step;
    END LOOP;
    RETURN representative;
END
$$;

-- The q-quantile (0 ≤ q ≤ 1) of a sketch: the value at rank floor(q·(n − 1)) of the n it
-- counted, within its relative accuracy; NULL when empty or q is outside [0, 1].
CREATE FUNCTION serving.quantile(sketch bigint[], q double precision) RETURNS double precision
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    total numeric := sketch[4];
    rank numeric;
    seen numeric := 0;
    positives bigint := sketch[5];
    negatives bigint := sketch[6];
BEGIN
    IF sketch[1] IS DISTINCT FROM 1 THEN
        RAISE EXCEPTION 'not a quantile sketch of format 1: %', sketch[1:3];
    END IF;
    FOR i IN 1 .. positives + negatives LOOP
        total := total + sketch[6 + 2 * i];
    END LOOP;
    IF total = 0 OR q < 0 OR q > 1 OR q = 'NaN' THEN
        RETURN NULL;
    END IF;
    rank := floor((q * (total - 1)::double precision)::numeric);
    -- Ascending values: negatives from the largest magnitude, zeros, positives.
    FOR i IN REVERSE positives + negatives .. positives + 1 LOOP
        seen := seen + sketch[6 + 2 * i];
        IF seen > rank THEN
            RETURN -serving.quantile_bucket_value(sketch[2]::integer, sketch[5 + 2 * i]);
        END IF;
    END LOOP;
    seen := seen + sketch[4];
    IF seen > rank THEN
        RETURN 0.0;
    END IF;
    FOR i IN 1 .. positives LOOP
        seen := seen + sketch[6 + 2 * i];
        IF seen > rank THEN
            RETURN serving.quantile_bucket_value(sketch[2]::integer, sketch[5 + 2 * i]);
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
