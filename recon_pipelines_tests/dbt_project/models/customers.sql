-- The warehouse's view of each customer: plan codes upper-cased, amounts in currency units.
select
    customer_id,
    upper(plan) as plan_code,
    cast(mrr_cents as numeric(12, 2)) / 100 as mrr
from {{ ref('raw_customers') }}
