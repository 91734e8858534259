WITH dups_a AS 
(SELECT keys_a.k0 AS k0, count(*) AS n 
FROM (SELECT COLLATE(src_a.id, 'utf8') AS k0 
FROM crm.accounts AS src_a 
WHERE NOT (src_a.id IS NULL OR (TRIM(src_a.id, ' 	
 ') = ''))) AS keys_a GROUP BY keys_a.k0 
HAVING count(*) > 1), 
dups_b AS 
(SELECT keys_b.k0 AS k0, count(*) AS n 
FROM (SELECT COLLATE(src_b.account_id, 'utf8') AS k0 
FROM billing.accounts AS src_b 
WHERE NOT (src_b.account_id IS NULL OR (TRIM(src_b.account_id, ' 	
 ') = ''))) AS keys_b GROUP BY keys_b.k0 
HAVING count(*) > 1), 
dup_keys AS 
(SELECT dups_a.k0 AS k0 
FROM dups_a UNION SELECT dups_b.k0 AS k0 
FROM dups_b)
 SELECT CASE WHEN (a.k0 IS NULL) THEN 'only_in_b' WHEN (b.k0 IS NULL) THEN 'only_in_a' ELSE 'pair' END AS __status, 1 AS __count, coalesce(a.k0, b.k0) AS k0, a.f0 AS a0, a.f1 AS a1, a.f2 AS a2, a.f3 AS a3, a.f4 AS a4, a.f5 AS a5, a.f6 AS a6, b.f0 AS b0, b.f1 AS b1, b.f2 AS b2, b.f3 AS b3, b.f4 AS b4, b.f5 AS b5, b.f6 AS b6 
FROM (SELECT src_a.id AS k0, src_a.email AS f0, src_a.plan AS f1, src_a.amount AS f2, src_a.qty AS f3, src_a.updated_at AS f4, src_a.signup AS f5, src_a.note AS f6 
FROM crm.accounts AS src_a 
WHERE NOT (src_a.id IS NULL OR (TRIM(src_a.id, ' 	
 ') = '')) AND NOT (EXISTS (SELECT * 
FROM dup_keys 
WHERE COLLATE(dup_keys.k0, 'utf8') = COLLATE(src_a.id, 'utf8')))) AS a FULL OUTER JOIN (SELECT src_b.account_id AS k0, src_b.email AS f0, src_b.plan AS f1, src_b.amount AS f2, src_b.qty AS f3, src_b.updated_at AS f4, src_b.signup AS f5, src_b.note AS f6 
FROM billing.accounts AS src_b 
WHERE NOT (src_b.account_id IS NULL OR (TRIM(src_b.account_id, ' 	
 ') = '')) AND NOT (EXISTS (SELECT * 
FROM dup_keys 
WHERE COLLATE(dup_keys.k0, 'utf8') = COLLATE(src_b.account_id, 'utf8')))) AS b ON COLLATE(a.k0, 'utf8') = COLLATE(b.k0, 'utf8') 
WHERE a.k0 IS NULL OR b.k0 IS NULL OR COLLATE(a.f0, 'utf8') IS DISTINCT FROM COLLATE(b.f0, 'utf8') OR COLLATE(a.f1, 'utf8') IS DISTINCT FROM COLLATE(b.f1, 'utf8') OR a.f2 IS DISTINCT FROM b.f2 OR a.f3 IS DISTINCT FROM b.f3 OR a.f4 IS DISTINCT FROM b.f4 OR a.f5 IS DISTINCT FROM b.f5 OR COLLATE(a.f6, 'utf8') IS DISTINCT FROM COLLATE(b.f6, 'utf8') OR a.f6 IS NULL OR b.f6 IS NULL UNION ALL SELECT 'duplicate_key_a' AS anon_1, dups_a.n, dups_a.k0, CAST(NULL AS VARCHAR(100)) AS anon_2, CAST(NULL AS VARCHAR(20)) AS anon__1, CAST(NULL AS NUMERIC(12, 2)) AS anon__2, CAST(NULL AS BIGINT) AS anon__3, CAST(NULL AS TIMESTAMP) AS anon__4, CAST(NULL AS DATE) AS anon__5, CAST(NULL AS VARCHAR(200)) AS anon__6, CAST(NULL AS VARCHAR(100)) AS anon__7, CAST(NULL AS VARCHAR(20)) AS anon__8, CAST(NULL AS NUMERIC(12, 2)) AS anon__9, CAST(NULL AS BIGINT) AS anon__10, CAST(NULL AS TIMESTAMP) AS anon__11, CAST(NULL AS DATE) AS anon__12, CAST(NULL AS VARCHAR(200)) AS anon__13 
FROM dups_a UNION ALL SELECT 'invalid_key_a' AS anon_3, count(*) AS count_1, keys_a.k0, CAST(NULL AS VARCHAR(100)) AS anon_2, CAST(NULL AS VARCHAR(20)) AS anon__1, CAST(NULL AS NUMERIC(12, 2)) AS anon__2, CAST(NULL AS BIGINT) AS anon__3, CAST(NULL AS TIMESTAMP) AS anon__4, CAST(NULL AS DATE) AS anon__5, CAST(NULL AS VARCHAR(200)) AS anon__6, CAST(NULL AS VARCHAR(100)) AS anon__7, CAST(NULL AS VARCHAR(20)) AS anon__8, CAST(NULL AS NUMERIC(12, 2)) AS anon__9, CAST(NULL AS BIGINT) AS anon__10, CAST(NULL AS TIMESTAMP) AS anon__11, CAST(NULL AS DATE) AS anon__12, CAST(NULL AS VARCHAR(200)) AS anon__13 
FROM (SELECT COLLATE(src_a.id, 'utf8') AS k0 
FROM crm.accounts AS src_a 
WHERE src_a.id IS NULL OR (TRIM(src_a.id, ' 	
 ') = '')) AS keys_a GROUP BY keys_a.k0 UNION ALL SELECT '__rows_a' AS anon_4, count(*) AS count_2, CAST(NULL AS VARCHAR(40)) AS anon_2, CAST(NULL AS VARCHAR(100)) AS anon__14, CAST(NULL AS VARCHAR(20)) AS anon__15, CAST(NULL AS NUMERIC(12, 2)) AS anon__16, CAST(NULL AS BIGINT) AS anon__17, CAST(NULL AS TIMESTAMP) AS anon__18, CAST(NULL AS DATE) AS anon__19, CAST(NULL AS VARCHAR(200)) AS anon__20, CAST(NULL AS VARCHAR(100)) AS anon__21, CAST(NULL AS VARCHAR(20)) AS anon__22, CAST(NULL AS NUMERIC(12, 2)) AS anon__23, CAST(NULL AS BIGINT) AS anon__24, CAST(NULL AS TIMESTAMP) AS anon__25, CAST(NULL AS DATE) AS anon__26, CAST(NULL AS VARCHAR(200)) AS anon__27 
FROM crm.accounts AS src_a UNION ALL SELECT '__dup_excluded_a' AS anon_5, count(*) AS count_3, CAST(NULL AS VARCHAR(40)) AS anon_2, CAST(NULL AS VARCHAR(100)) AS anon__14, CAST(NULL AS VARCHAR(20)) AS anon__15, CAST(NULL AS NUMERIC(12, 2)) AS anon__16, CAST(NULL AS BIGINT) AS anon__17, CAST(NULL AS TIMESTAMP) AS anon__18, CAST(NULL AS DATE) AS anon__19, CAST(NULL AS VARCHAR(200)) AS anon__20, CAST(NULL AS VARCHAR(100)) AS anon__21, CAST(NULL AS VARCHAR(20)) AS anon__22, CAST(NULL AS NUMERIC(12, 2)) AS anon__23, CAST(NULL AS BIGINT) AS anon__24, CAST(NULL AS TIMESTAMP) AS anon__25, CAST(NULL AS DATE) AS anon__26, CAST(NULL AS VARCHAR(200)) AS anon__27 
FROM crm.accounts AS src_a 
WHERE NOT (src_a.id IS NULL OR (TRIM(src_a.id, ' 	
 ') = '')) AND (EXISTS (SELECT * 
FROM dup_keys 
WHERE COLLATE(dup_keys.k0, 'utf8') = COLLATE(src_a.id, 'utf8'))) UNION ALL SELECT 'duplicate_key_b' AS anon_6, dups_b.n, dups_b.k0, CAST(NULL AS VARCHAR(100)) AS anon_2, CAST(NULL AS VARCHAR(20)) AS anon__1, CAST(NULL AS NUMERIC(12, 2)) AS anon__2, CAST(NULL AS BIGINT) AS anon__3, CAST(NULL AS TIMESTAMP) AS anon__4, CAST(NULL AS DATE) AS anon__5, CAST(NULL AS VARCHAR(200)) AS anon__6, CAST(NULL AS VARCHAR(100)) AS anon__7, CAST(NULL AS VARCHAR(20)) AS anon__8, CAST(NULL AS NUMERIC(12, 2)) AS anon__9, CAST(NULL AS BIGINT) AS anon__10, CAST(NULL AS TIMESTAMP) AS anon__11, CAST(NULL AS DATE) AS anon__12, CAST(NULL AS VARCHAR(200)) AS anon__13 
FROM dups_b UNION ALL SELECT 'invalid_key_b' AS anon_7, count(*) AS count_4, keys_b.k0, CAST(NULL AS VARCHAR(100)) AS anon_2, CAST(NULL AS VARCHAR(20)) AS anon__1, CAST(NULL AS NUMERIC(12, 2)) AS anon__2, CAST(NULL AS BIGINT) AS anon__3, CAST(NULL AS TIMESTAMP) AS anon__4, CAST(NULL AS DATE) AS anon__5, CAST(NULL AS VARCHAR(200)) AS anon__6, CAST(NULL AS VARCHAR(100)) AS anon__7, CAST(NULL AS VARCHAR(20)) AS anon__8, CAST(NULL AS NUMERIC(12, 2)) AS anon__9, CAST(NULL AS BIGINT) AS anon__10, CAST(NULL AS TIMESTAMP) AS anon__11, CAST(NULL AS DATE) AS anon__12, CAST(NULL AS VARCHAR(200)) AS anon__13 
FROM (SELECT COLLATE(src_b.account_id, 'utf8') AS k0 
FROM billing.accounts AS src_b 
WHERE src_b.account_id IS NULL OR (TRIM(src_b.account_id, ' 	
 ') = '')) AS keys_b GROUP BY keys_b.k0 UNION ALL SELECT '__rows_b' AS anon_8, count(*) AS count_5, CAST(NULL AS VARCHAR(40)) AS anon_2, CAST(NULL AS VARCHAR(100)) AS anon__14, CAST(NULL AS VARCHAR(20)) AS anon__15, CAST(NULL AS NUMERIC(12, 2)) AS anon__16, CAST(NULL AS BIGINT) AS anon__17, CAST(NULL AS TIMESTAMP) AS anon__18, CAST(NULL AS DATE) AS anon__19, CAST(NULL AS VARCHAR(200)) AS anon__20, CAST(NULL AS VARCHAR(100)) AS anon__21, CAST(NULL AS VARCHAR(20)) AS anon__22, CAST(NULL AS NUMERIC(12, 2)) AS anon__23, CAST(NULL AS BIGINT) AS anon__24, CAST(NULL AS TIMESTAMP) AS anon__25, CAST(NULL AS DATE) AS anon__26, CAST(NULL AS VARCHAR(200)) AS anon__27 
FROM billing.accounts AS src_b UNION ALL SELECT '__dup_excluded_b' AS anon_9, count(*) AS count_6, CAST(NULL AS VARCHAR(40)) AS anon_2, CAST(NULL AS VARCHAR(100)) AS anon__14, CAST(NULL AS VARCHAR(20)) AS anon__15, CAST(NULL AS NUMERIC(12, 2)) AS anon__16, CAST(NULL AS BIGINT) AS anon__17, CAST(NULL AS TIMESTAMP) AS anon__18, CAST(NULL AS DATE) AS anon__19, CAST(NULL AS VARCHAR(200)) AS anon__20, CAST(NULL AS VARCHAR(100)) AS anon__21, CAST(NULL AS VARCHAR(20)) AS anon__22, CAST(NULL AS NUMERIC(12, 2)) AS anon__23, CAST(NULL AS BIGINT) AS anon__24, CAST(NULL AS TIMESTAMP) AS anon__25, CAST(NULL AS DATE) AS anon__26, CAST(NULL AS VARCHAR(200)) AS anon__27 
FROM billing.accounts AS src_b 
WHERE NOT (src_b.account_id IS NULL OR (TRIM(src_b.account_id, ' 	
 ') = '')) AND (EXISTS (SELECT * 
FROM dup_keys 
WHERE COLLATE(dup_keys.k0, 'utf8') = COLLATE(src_b.account_id, 'utf8')))
