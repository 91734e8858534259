SELECT r.b, count(*) AS n, CAST(sum(TO_NUMBER(substr(r.h, 1, 8), 'XXXXXXXX')) AS BIGINT) AS hi, CAST(sum(TO_NUMBER(substr(r.h, 9, 8), 'XXXXXXXX')) AS BIGINT) AS lo, max(CASE WHEN r.d THEN 1 ELSE 0 END) AS d 
FROM (SELECT mod(TO_NUMBER(substr(md5(CASE WHEN (src.account_id IS NULL) THEN 'N' ELSE md5(src.account_id) END), 1, 8), 'XXXXXXXX'), 65536) AS b, md5(concat(CASE WHEN (src.account_id IS NULL) THEN 'N' ELSE md5(src.account_id) END, CASE WHEN (src.email IS NULL) THEN 'N' ELSE md5(src.email) END, CASE WHEN (src.plan IS NULL) THEN 'N' ELSE md5(src.plan) END, CASE WHEN (src.amount IS NULL) THEN 'N' ELSE md5(IFF(CONTAINS(TO_VARCHAR(src.amount), '.'), RTRIM(RTRIM(TO_VARCHAR(src.amount), '0'), '.'), TO_VARCHAR(src.amount))) END, CASE WHEN (src.qty IS NULL) THEN 'N' ELSE md5(TO_VARCHAR(src.qty)) END, CASE WHEN (src.updated_at IS NULL) THEN 'N' ELSE coalesce(md5(TO_VARCHAR(src.updated_at, 'YYYY-MM-DD"T"HH24:MI:SS.FF6')), concat('X', md5(TO_VARCHAR(src.updated_at)))) END, CASE WHEN (src.signup IS NULL) THEN 'N' ELSE coalesce(md5(TO_VARCHAR(src.signup, 'YYYY-MM-DD')), concat('X', md5(TO_VARCHAR(src.signup)))) END, CASE WHEN (src.note IS NULL) THEN 'N' ELSE md5(src.note) END)) AS h, src.account_id IS NULL OR (TRIM(src.account_id, ' 	
 ') = '') OR src.note IS NULL AS d 
FROM billing.accounts AS src) AS r GROUP BY r.b UNION ALL SELECT keyed.b, 0 AS n, 0 AS hi, 0 AS lo, 1 AS d 
FROM (SELECT mod(TO_NUMBER(substr(md5(CASE WHEN (src.account_id IS NULL) THEN 'N' ELSE md5(src.account_id) END), 1, 8), 'XXXXXXXX'), 65536) AS b, COLLATE(src.account_id, 'utf8') AS k0 
FROM billing.accounts AS src 
WHERE NOT (src.account_id IS NULL OR (TRIM(src.account_id, ' 	
 ') = ''))) AS keyed GROUP BY keyed.b, keyed.k0 
HAVING count(*) > 1
