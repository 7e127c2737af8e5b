-- bauplan: materialization_strategy=REPLACE
SELECT vendor, count(*) AS trips FROM big_fares GROUP BY vendor
