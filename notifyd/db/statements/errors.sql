-- What notifyd.http.errors needs to turn PostgreSQL's own constraint errors into clean REST messages.

-- constraint_columns --
-- The columns a constraint (or a unique index) covers, in table order, and the table a foreign key refers to
SELECT (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute AS a
        WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)) AS columns,
       (SELECT rn.nspname || '.' || r.relname FROM pg_catalog.pg_class AS r
        JOIN pg_catalog.pg_namespace AS rn ON rn.oid = r.relnamespace WHERE r.oid = c.confrelid) AS refers_to
FROM pg_catalog.pg_constraint AS c
JOIN pg_catalog.pg_class AS t ON t.oid = c.conrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = t.relnamespace
WHERE n.nspname = $1 AND t.relname = $2 AND c.conname = $3
UNION ALL
SELECT (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute AS a
        WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)) AS columns,
       NULL
FROM pg_catalog.pg_index AS i
JOIN pg_catalog.pg_class AS ic ON ic.oid = i.indexrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = ic.relnamespace
WHERE n.nspname = $1 AND ic.relname = $3
LIMIT 1
