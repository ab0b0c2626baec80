-- Quantile unions in linear time (issue 40 review): the union of 20261206190000 ran a query with
-- window functions at every step of serving.quantile_union_agg (60 rows of 200 buckets took
-- 0.4 s, a day of minutes 11 s). The same union as one merge of two sorted stores, and an
-- aggregate that checks each input once and trusts its own state. Same results, element for
-- element (schemas::quantile::postgres_tests holds both to the Rust merge).

-- The (index, count) pairs of one store: `a`'s `a_pairs` pairs from element `a_at`, merged with
-- `b`'s, counts added (saturating at 2^63 - 1), then every index below the window of
-- `max_buckets` ending at the largest folded into the window's lowest.
CREATE FUNCTION serving.quantile_merge_store(a bigint[], a_at integer, a_pairs integer,
                                             b bigint[], b_at integer, b_pairs integer,
                                             max_buckets bigint)
RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    top constant bigint := 9223372036854775807;
    merged bigint[] := '{}';
    k integer := 0;
    i integer := 0;
    j integer := 0;
    idx bigint;
    n bigint;
    floor_index bigint;
    folded bigint := 0;
    out bigint[] := '{}';
BEGIN
    WHILE i < a_pairs OR j < b_pairs LOOP
        IF j >= b_pairs OR (i < a_pairs AND a[a_at + 2 * i] < b[b_at + 2 * j]) THEN
            idx := a[a_at + 2 * i];
            n := a[a_at + 2 * i + 1];
            i := i + 1;
        ELSIF i >= a_pairs OR b[b_at + 2 * j] < a[a_at + 2 * i] THEN
            idx := b[b_at + 2 * j];
            n := b[b_at + 2 * j + 1];
            j := j + 1;
        ELSE
            idx := a[a_at + 2 * i];
            n := CASE WHEN a[a_at + 2 * i + 1] > top - b[b_at + 2 * j + 1] THEN top
                      ELSE a[a_at + 2 * i + 1] + b[b_at + 2 * j + 1] END;
            i := i + 1;
            j := j + 1;
        END IF;
        -- Element assignments grow the array in place.
        merged[k + 1] := idx;
        merged[k + 2] := n;
        k := k + 2;
    END LOOP;
    IF array_length(merged, 1) IS NULL THEN
        RETURN merged;
    END IF;
    floor_index := merged[array_length(merged, 1) - 1] - max_buckets + 1;
    IF merged[1] >= floor_index THEN
        RETURN merged;
    END IF;
    i := 1;
    WHILE merged[i] <= floor_index LOOP
        folded := CASE WHEN folded > top - merged[i + 1] THEN top ELSE folded + merged[i + 1] END;
        i := i + 2;
    END LOOP;
    out := ARRAY[floor_index, folded];
    RETURN out || merged[i:];
END
$$;

CREATE OR REPLACE FUNCTION serving.quantile_union(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    PERFORM serving.quantile_check(a);
    PERFORM serving.quantile_check(b);
    RETURN serving.quantile_union_checked(a, b);
END
$$;

-- The union of two sketches already checked (serving.quantile_check).
CREATE FUNCTION serving.quantile_union_checked(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    positives bigint[];
    negatives bigint[];
BEGIN
    IF a[2] <> b[2] OR a[3] <> b[3] THEN
        RAISE EXCEPTION 'quantile sketches of different settings cannot be merged: % and %',
            a[1:3], b[1:3];
    END IF;
    positives := serving.quantile_merge_store(a, 7, a[5]::integer, b, 7, b[5]::integer, a[3]);
    negatives := serving.quantile_merge_store(a, 7 + 2 * a[5]::integer, a[6]::integer,
                                              b, 7 + 2 * b[5]::integer, b[6]::integer, a[3]);
    RETURN ARRAY[1, a[2], a[3], least(a[4]::numeric + b[4], 9223372036854775807)::bigint,
                 coalesce(array_length(positives, 1), 0) / 2,
                 coalesce(array_length(negatives, 1), 0) / 2] || positives || negatives;
END
$$;

-- The aggregate's step: the state is a union this function returned (or its first input,
-- checked); each new sketch is checked once.
CREATE FUNCTION serving.quantile_union_step(state bigint[], s bigint[]) RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF s IS NULL THEN
        RETURN state;
    END IF;
    PERFORM serving.quantile_check(s);
    IF state IS NULL THEN
        RETURN s;
    END IF;
    RETURN serving.quantile_union_checked(state, s);
END
$$;

CREATE OR REPLACE AGGREGATE serving.quantile_union_agg(bigint[]) (
    SFUNC = serving.quantile_union_step,
    STYPE = bigint[],
    PARALLEL = SAFE
);
