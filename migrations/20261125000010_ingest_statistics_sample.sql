-- The ingest's statistics refresh (migrations 008 and 009) samples 3,000 rows, not 30,000.
--
-- ANALYZE reads a sample of 300 × the statistics target rows, from as many pages, and sorts it
-- column by column. At the default target (100) that is 30,000 pages of an events partition,
-- which is every page of one up to 240 MB: measured in psql on 300,000 benchmark-shaped rows
-- (172 MB, `meta`'s target 0 as 009 sets it), 215–460 ms an ANALYZE at 100, 18–19 ms at 10; on
-- 1.2 million rows (688 MB), 285–304 ms against 21–28 ms. Under the ingest benchmark's load the
-- refreshes that passed the one-second mark (sqlx logs those as slow) took 1.0–2.2 s: one
-- PostgreSQL backend busy for that long, beside the stores and the edge on the same cores, every
-- time a partition grew by a tenth.
--
-- What the refresh is for needs far less: the ingest's statements probe unique keys, and their
-- plans only have to know that `events` is large and `id` nearly unique (migration 008). With a
-- target of 10 the row count still comes from the pages sampled, and each column keeps a
-- most-common-values list and histogram of up to 10 entries, enough for the API's filters on
-- indexed keys. Columns with a target of their own keep it (`meta`: 0). autovacuum's analyses,
-- where it runs, still use the server's default; an operator can choose another target for the
-- refresh with `alter function flywheel_ingest_analyze() set default_statistics_target = …`.

alter function flywheel_ingest_analyze() set default_statistics_target = 10;
