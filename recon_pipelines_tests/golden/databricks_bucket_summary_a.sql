SELECT r.b, count(*) AS n, CAST(sum(CAST(conv(substr(r.h, 1, 8), 16, 10) AS BIGINT)) AS BIGINT) AS hi, CAST(sum(CAST(conv(substr(r.h, 9, 8), 16, 10) AS BIGINT)) AS BIGINT) AS lo, max(CASE WHEN r.d THEN 1 ELSE 0 END) AS d 
FROM (SELECT mod(CAST(conv(substr(md5(CASE WHEN (src.id IS NULL) THEN 'N' ELSE md5(src.id) END), 1, 8), 16, 10) AS BIGINT), 65536) AS b, md5(concat(CASE WHEN (src.id IS NULL) THEN 'N' ELSE md5(src.id) END, CASE WHEN (src.email IS NULL) THEN 'N' ELSE md5(src.email) END, CASE WHEN (src.plan IS NULL) THEN 'N' ELSE md5(src.plan) END, CASE WHEN (src.amount IS NULL) THEN 'N' ELSE md5(IF(instr(CAST(src.amount AS STRING), '.') > 0, TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM CAST(src.amount AS STRING))), CAST(src.amount AS STRING))) END, CASE WHEN (src.qty IS NULL) THEN 'N' ELSE md5(CAST(src.qty AS STRING)) END, CASE WHEN (src.updated_at IS NULL) THEN 'N' ELSE coalesce(md5(date_format(src.updated_at, 'yyyy-MM-dd\'T\'HH:mm:ss.SSSSSS')), concat('X', md5(CAST(src.updated_at AS STRING)))) END, CASE WHEN (src.signup IS NULL) THEN 'N' ELSE coalesce(md5(date_format(src.signup, 'yyyy-MM-dd')), concat('X', md5(CAST(src.signup AS STRING)))) END, CASE WHEN (src.note IS NULL) THEN 'N' ELSE md5(src.note) END)) AS h, src.id IS NULL OR (TRIM(BOTH ' 	
 ' FROM src.id) = '') OR src.note IS NULL AS d 
FROM crm.accounts AS src) AS r GROUP BY r.b UNION ALL SELECT keyed.b, 0 AS n, 0 AS hi, 0 AS lo, 1 AS d 
FROM (SELECT mod(CAST(conv(substr(md5(CASE WHEN (src.id IS NULL) THEN 'N' ELSE md5(src.id) END), 1, 8), 16, 10) AS BIGINT), 65536) AS b, src.id COLLATE UTF8_BINARY AS k0 
FROM crm.accounts AS src 
WHERE NOT (src.id IS NULL OR (TRIM(BOTH ' 	
 ' FROM src.id) = ''))) AS keyed GROUP BY keyed.b, keyed.k0 
HAVING count(*) > 1
