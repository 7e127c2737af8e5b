-- Trips and mean fare per borough, for boroughs with at least $min_trips trips.
-- lakeplan: materialization_strategy=REPLACE
SELECT borough,
       sum(trips) AS trips,
       round(sum(total_fare) / sum(trips), 2) AS mean_fare
FROM zone_stats
GROUP BY borough
HAVING sum(trips) >= $min_trips
ORDER BY borough
