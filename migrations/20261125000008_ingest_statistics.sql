-- Fresh planner statistics for the tables the ingestor writes (issue 4).
--
-- `flywheel_ingest_events` plans each statement once per connection (force_generic_plan), from
-- the statistics of the moment. Planned while `events` is empty or has never been analyzed, its
-- duplicate check becomes a hash anti-join over all of the tenant's stored events, and its lead
-- lookups scan a tenant's leads by another index: every batch then reads everything the tenant
-- has stored, and a batch's cost grows with the table (measured in the ingest benchmark: 360 ms
-- and 210,000 buffers for a batch of 5,000 events once `events` held about a million rows; in
-- the test, 3,000 buffers an event at 60,000 stored against 24 with statistics). With
-- statistics the same statements probe the primary key and the unique keys, a few index
-- descents a row; an ANALYZE invalidates the cached plans, so each connection plans again.
--
-- autovacuum analyzes a table once its changes since the last analysis pass a threshold, but it
-- may be off (it is on some managed and test servers) and it wakes once a minute at best: the
-- ingestor calls this function every few seconds instead, and it analyzes what crossed
-- autovacuum's own threshold (autovacuum_analyze_threshold + autovacuum_analyze_scale_factor ×
-- rows). Where autovacuum got there first there is nothing left to do.

create function flywheel_ingest_analyze() returns text[]
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
    execute format('analyze %s', v_rel);
    v_done := v_done || v_rel::text;
  end loop;
  return v_done;
end $$;

revoke execute on function flywheel_ingest_analyze() from public;
grant execute on function flywheel_ingest_analyze() to flywheel_app;
