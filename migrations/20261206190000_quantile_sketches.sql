-- Quantile sketches in PostgreSQL (schemas::quantile): merged by the speed upsert and by
-- readers, answered for BI tools. A sketch is the canonical bigint[] of
-- QuantileSketch::to_array: [format 1, precision, max_buckets, zeros, positive buckets,
-- negative buckets], then (index, count) pairs of the positive store by ascending index, then
-- those of the negative store. These functions compute what the Rust code computes, with the
-- same arithmetic, so that a union here equals a merge there element for element.

-- Raises unless `s` is a sketch QuantileSketch::to_array could write: one dimension from 1, no
-- NULLs, format 1, precision 1..16, max_buckets 16..65536, as many pairs as the header says,
-- indices of finite magnitudes strictly ascending within each store's window, counts > 0. Every
-- function below calls it first, so a malformed array stored by hand is an error, never a long
-- loop or an invented count.
CREATE FUNCTION serving.quantile_check(s bigint[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    m bigint;
    first_index bigint;
    previous bigint;
    pair_count bigint;
BEGIN
    IF array_ndims(s) IS DISTINCT FROM 1 OR array_lower(s, 1) <> 1 OR array_length(s, 1) < 6
       OR array_position(s, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'not a quantile sketch: a one-dimensional bigint[] of at least 6 elements without NULLs is expected';
    END IF;
    IF s[1] <> 1 OR s[2] NOT BETWEEN 1 AND 16 OR s[3] NOT BETWEEN 16 AND 65536 OR s[4] < 0
       OR s[5] NOT BETWEEN 0 AND 65536 OR s[6] NOT BETWEEN 0 AND 65536 THEN
        RAISE EXCEPTION 'not a quantile sketch: header %', s[1:6];
    END IF;
    pair_count := s[5] + s[6];
    IF array_length(s, 1) <> 6 + 2 * pair_count THEN
        RAISE EXCEPTION 'not a quantile sketch: % elements where the header says %', array_length(s, 1),
            6 + 2 * pair_count;
    END IF;
    m := 1::bigint << s[2]::integer;
    FOR i IN 1 .. pair_count LOOP
        IF i = 1 OR i = s[5] + 1 THEN
            first_index := s[5 + 2 * i];
            previous := NULL;
        END IF;
        IF s[5 + 2 * i] NOT BETWEEN -1074 * m AND 1024 * m - 1 OR s[6 + 2 * i] <= 0
           OR s[5 + 2 * i] <= previous OR s[5 + 2 * i] - first_index >= s[3] THEN
            RAISE EXCEPTION 'not a quantile sketch: bucket % (index %, count %)', i, s[5 + 2 * i],
                s[6 + 2 * i];
        END IF;
        previous := s[5 + 2 * i];
    END LOOP;
END
$$;

-- The union of two sketches of the same settings: counts added per (sign, index), then each
-- store folded into its window of max_buckets indices ending at its largest.
CREATE FUNCTION serving.quantile_union(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    merged bigint[];
    positives bigint;
    negatives bigint;
BEGIN
    PERFORM serving.quantile_check(a);
    PERFORM serving.quantile_check(b);
    IF a[2] <> b[2] OR a[3] <> b[3] THEN
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
    m bigint := 1::bigint << least(greatest(log2_buckets, 1), 16);
    within bigint := idx - floor(idx::numeric / m)::bigint * m;
    exponent bigint := floor(idx::numeric / m)::bigint;
    roots double precision[];
    lo double precision := 1.0;
    hi double precision := 1.0;
    representative double precision;
    step bigint;
BEGIN
    IF log2_buckets NOT BETWEEN 1 AND 16 OR idx NOT BETWEEN -1074 * m AND 1024 * m - 1 THEN
        RAISE EXCEPTION 'no quantile bucket % at precision %', idx, log2_buckets;
    END IF;
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

-- The q-quantile (0 ≤ q ≤ 1) of a sketch: the value at rank min(floor(q·(n − 1)), n − 1) of the n it
-- counted, within its relative accuracy; NULL when empty or q is outside [0, 1].
CREATE FUNCTION serving.quantile(sketch bigint[], q double precision) RETURNS double precision
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    total numeric := sketch[4];
    rank numeric;
    last_rank numeric;
    product double precision;
    seen numeric := 0;
    positives bigint := sketch[5];
    negatives bigint := sketch[6];
BEGIN
    PERFORM serving.quantile_check(sketch);
    FOR i IN 1 .. positives + negatives LOOP
        total := total + sketch[6 + 2 * i];
    END LOOP;
    IF total = 0 OR q < 0 OR q > 1 OR q = 'NaN' THEN
        RETURN NULL;
    END IF;
    -- As the Rust code: the product in double precision, its floor, at most the last rank.
    last_rank := total - 1;
    -- (Through bigint: a double's cast to numeric keeps 15 digits only; past 2^63 records,
    -- beyond any real count, the ranks may differ in their last digits.)
    product := floor(q * last_rank::double precision);
    rank := least(CASE WHEN product < 9.2e18 THEN product::bigint::numeric ELSE product::numeric END,
                  last_rank);
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
