-- The ingest's statistics refresh (migration 008) without the `meta` column of `events`.
--
-- `meta` is the bulk of an event row (the benchmark's average is 400 bytes of JSON), and no
-- query the planner has to choose a plan for filters, joins or sorts on its content; yet ANALYZE
-- built a most-common-values list and a histogram of it, comparing thousands of `jsonb` values.
-- That was most of the work of each refresh: a second or more of one PostgreSQL backend at a
-- time, beside the batches being stored and the edge answering requests on the same cores. A
-- column with a statistics target of 0 is skipped by ANALYZE (autovacuum's included), while the
-- table's row count and the columns the ingest's statements probe (`tenant_id`, `id`,
-- `occurred_at`, the leads' and visitors' keys) keep theirs.
--
-- A partition does not take its parent's per-column targets when it is created, so the target is
-- set here on every partition there is, and the refresh sets it on any partition before it
-- analyzes it (the same lock ANALYZE takes; once per partition).

alter table events alter column meta set statistics 0;

create or replace function flywheel_ingest_analyze() returns text[]
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_base double precision := current_setting('autovacuum_analyze_threshold')::double precision;
  v_scale double precision := current_setting('autovacuum_analyze_scale_factor')::double precision;
  v_done text[] := '{}';
  v_rel regclass;
begin
  -- One caller at a time (any node, any ingestor): the others have nothing to add.
  if not pg_try_advisory_xact_lock(hashtextextended('flywheel.ingest_analyze', 0)) then
    return v_done;
  end if;
  for v_rel in
    select s.relid::regclass
      from pg_stat_user_tables s
      join pg_class c on c.oid = s.relid
     where s.relid in (select t.relid from pg_partition_tree('events') t where t.isleaf
                       union all select 'leads'::regclass
                       union all select 'visitor_links'::regclass)
       and s.n_mod_since_analyze > v_base + v_scale * greatest(c.reltuples, 0)
     order by s.n_mod_since_analyze desc
  loop
    if exists (select 1 from pg_attribute a
                where a.attrelid = v_rel and a.attname = 'meta' and a.attstattarget <> 0
                  and v_rel in (select t.relid from pg_partition_tree('events') t)) then
      execute format('alter table %s alter column meta set statistics 0', v_rel);
    end if;
    execute format('analyze %s', v_rel);
    v_done := v_done || v_rel::text;
  end loop;
  return v_done;
end $$;

revoke execute on function flywheel_ingest_analyze() from public;
grant execute on function flywheel_ingest_analyze() to flywheel_app;
